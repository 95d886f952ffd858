// FullyShardedModel's SHARDED_STATE_DICT: each rank's pieces of the
// parameters written as slices, and read back by any number of ranks.
#include <set>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/util/check.h"

namespace accel::fsdp {

void FullyShardedModel::save_slices(const std::filesystem::path& file, int rank, int world_size) const {
  std::vector<Slice> slices;
  for (const auto& unit : units_) {
    unit->wait_for_update();
    for (size_t i = 0; i < unit->parameters().size(); ++i) {
      const auto& p = unit->parameters()[i];
      const auto& name = unit->names()[i];
      slices.push_back(Slice{name, unit->piece(i), name, p.sizes().vec(), unit->dtype(), unit->piece_begin(i)});
    }
  }
  if (rank == 0) {
    for (const auto& [name, t] : model_state(*model_)) {
      if (find(t).first) continue;  // a parameter: written above
      slices.push_back(Slice{name, t, name, t.sizes().vec(), t.scalar_type(), 0});
    }
  }
  accel::save_slices(slices, file, world_size, {{"format", "accel.fsdp_model/1"}});
}

void FullyShardedModel::load_slices(const SliceSet& slices) {
  torch::NoGradGuard no_grad;
  std::set<std::string> known;
  auto check_whole = [&](const std::string& name, const torch::Tensor& t) {
    ACCEL_CHECK(slices.contains(name), "loading the sharded model: the checkpoint holds no '", name, "'");
    const auto& saved = slices.whole(name).shape;
    ACCEL_CHECK(saved == t.sizes().vec(), "loading the sharded model: '", name, "' has shape ", t.sizes(), " here and ",
                c10::IntArrayRef(saved), " in the checkpoint");
    known.insert(name);
  };
  // Everything is checked before any shard is written.
  for (const auto& unit : units_)
    for (size_t i = 0; i < unit->parameters().size(); ++i) check_whole(unit->names()[i], unit->parameters()[i]);
  std::vector<std::pair<std::string, torch::Tensor>> buffers;
  for (const auto& [name, t] : model_state(*model_)) {
    if (find(t).first) continue;
    check_whole(name, t);
    buffers.emplace_back(name, t);
  }
  for (const auto& name : slices.wholes())
    ACCEL_CHECK(known.count(name), "loading the sharded model: the checkpoint holds '", name,
                "', which this model does not have");
  for (auto& unit : units_) {
    unit->reshard();
    for (size_t i = 0; i < unit->parameters().size(); ++i) {
      const auto& piece = unit->piece(i);
      unit->write_piece(i, slices.read(unit->names()[i], unit->piece_begin(i), piece.numel(), piece.scalar_type()));
    }
    unit->pieces_written();
  }
  for (auto& [name, t] : buffers) t.copy_(slices.read_whole(name));
}

}  // namespace accel::fsdp
