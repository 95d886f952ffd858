#include "accel/parallel/zero/zero_mesh_checkpoint.h"

#include <string>

#include "accel/checkpoint/atomic_file.h"
#include "accel/parallel/zero/zero_checkpoint.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel::zero {
namespace {

fs::path group_dir(const fs::path& dir, int tp) { return dir / ("zero_tp" + std::to_string(tp)); }

class ZeroMeshOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  ZeroMeshOptimizerCheckpoint(ZeroEngine& engine, int tp, int tp_size) : engine_(engine), tp_(tp), tp_size_(tp_size) {}

  void save(const fs::path& dir, size_t index, int) override {
    // (Accelerator refuses consolidated_checkpoint on a mesh before this.)
    const auto sub = group_dir(dir, tp_);
    fs::create_directories(sub);
    save_shard(engine_, sub / shard_file_name(index, engine_.rank()));
    if (engine_.rank() == 0) write_file_atomic(sub / layout_file_name(index), engine_.layout().to_json());
  }

  std::string other_world_refusal(const fs::path&, size_t) const override {
    return "its ZeRO optimizer state is sharded per tensor-parallel group and pipeline stage (zero_tp<g>/...); "
           "resume on the same layout";
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int, bool) const override {
    // Checked here, before load_state loads anything on any rank.
    ACCEL_CHECK(!fs::exists(group_dir(dir, tp_size_)), "load_state: '", dir.string(), "' holds ",
                group_dir(dir, tp_size_).filename().string(), ": it was saved with more than ", tp_size_,
                " groups (tp_size x pp_size); resume on the layout that saved it");
    const auto sub = group_dir(dir, tp_);
    std::vector<fs::path> files{sub / layout_file_name(index)};
    for (int r = 0; r < engine_.world_size(); ++r) files.push_back(sub / shard_file_name(index, r));
    return files;
  }

  void load(const fs::path& dir, size_t index, int, bool) override { load_shards(engine_, group_dir(dir, tp_), index); }

 private:
  ZeroEngine& engine_;
  int tp_, tp_size_;
};

}  // namespace

std::unique_ptr<OptimizerCheckpoint> zero_mesh_optimizer_checkpoint(ZeroEngine& engine, int tp_coordinate,
                                                                    int tp_size) {
  return std::make_unique<ZeroMeshOptimizerCheckpoint>(engine, tp_coordinate, tp_size);
}

bool has_zero_mesh_optimizer_files(const fs::path& dir, size_t index) {
  return fs::exists(group_dir(dir, 0) / layout_file_name(index));
}

}  // namespace accel::zero
