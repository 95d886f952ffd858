#include "accel/parallel/zero/zero_optimizer_checkpoint.h"

#include <optional>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/zero_checkpoint.h"

namespace fs = std::filesystem;

namespace accel::zero {
namespace {

class ZeroOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  explicit ZeroOptimizerCheckpoint(ZeroEngine& engine) : engine_(engine) {}

  void save(const fs::path& dir, size_t index, int rank) override {
    save_shard(engine_, dir / shard_file_name(index, rank));
    if (rank == 0) write_file_atomic(dir / layout_file_name(index), engine_.layout().to_json());
    if (!engine_.options().consolidated_checkpoint()) return;
    const OptimizerStateFiles full = consolidated_state(engine_);  // a collective: every rank
    if (rank != 0) return;
    safetensors::save_file(full.tensors, dir / numbered("optimizer", index, ".safetensors"));
    write_file_atomic(dir / numbered("optimizer", index, ".json"), full.json);
  }

  std::string other_world_refusal(const fs::path& dir, size_t index) const override {
    if (fs::exists(dir / numbered("optimizer", index, ".safetensors")) || !fs::exists(dir / layout_file_name(index)))
      return "";
    return "its optimizer state is sharded per process (" + shard_file_name(index, 0) +
           ", ...); save with ShardingOptions().consolidated_checkpoint(true) to resume with another number of "
           "processes";
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int rank, bool same_world) const override {
    if (from_shards(dir, index, same_world)) return {dir / shard_file_name(index, rank)};
    return {dir / numbered("optimizer", index, ".safetensors"), dir / numbered("optimizer", index, ".json")};
  }

  void load(const fs::path& dir, size_t index, int, bool same_world) override {
    if (from_shards(dir, index, same_world)) {
      load_shards(engine_, dir, index);
      return;
    }
    const auto file = dir / numbered("optimizer", index, ".safetensors");
    load_consolidated_state(engine_, safetensors::load_file(file),
                            read_checkpoint_text(dir / numbered("optimizer", index, ".json")),
                            "'" + file.string() + "'");
  }

 private:
  // The shards when they fit this run, else the full state.
  static bool from_shards(const fs::path& dir, size_t index, bool same_world) {
    return same_world && fs::exists(dir / layout_file_name(index));
  }

  ZeroEngine& engine_;
};

}  // namespace

std::unique_ptr<OptimizerCheckpoint> zero_optimizer_checkpoint(ZeroEngine& engine) {
  return std::make_unique<ZeroOptimizerCheckpoint>(engine);
}

}  // namespace accel::zero
