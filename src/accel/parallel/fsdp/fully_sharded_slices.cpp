// FullyShardedModel's SHARDED_STATE_DICT: each rank's pieces of the
// parameters written as slices, and read back by any number of ranks and
// any tensor-parallel layout.
#include <set>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/parallel/fsdp/fully_sharded_slices.h"
#include "accel/util/check.h"

namespace accel::fsdp {

void save_fully_sharded_slices(const FullyShardedModel& model, const std::filesystem::path& file,
                               const FullyShardedSliceWriter& writer) {
  std::vector<Slice> slices;
  for (const auto& unit : model.units()) {
    unit->wait_for_update();
    for (size_t i = 0; i < unit->parameters().size(); ++i) {
      const auto& name = unit->names()[i];
      append_piece_slices(slices, name, name, unit->piece(i), unit->parameters()[i], unit->piece_begin(i),
                          unit->dtype(), writer.unsplit_parameters);
    }
  }
  if (writer.buffers) {
    for (const auto& [name, t] : model_state(model.module())) {
      if (model.find(t).first) continue;  // a parameter: written above
      append_tensor_slices(slices, name, t, t, /*replicated=*/true);
    }
  }
  accel::save_slices(slices, file, writer.count, {{"format", "accel.fsdp_model/1"}});
}

void FullyShardedModel::save_slices(const std::filesystem::path& file, int rank, int world_size) const {
  save_fully_sharded_slices(*this, file, {rank, world_size, /*unsplit_parameters=*/true, /*buffers=*/rank == 0});
}

void FullyShardedModel::load_slices(const SliceSet& slices) {
  torch::NoGradGuard no_grad;
  std::set<std::string> known;
  auto check_whole = [&](const std::string& name, const torch::Tensor& t) {
    ACCEL_CHECK(slices.contains(name), "loading the sharded model: the checkpoint holds no '", name, "'");
    const auto& saved = slices.whole(name).shape;
    const auto want = whole_shape_of(t);  // a tensor-parallel slice's whole
    ACCEL_CHECK(saved == want, "loading the sharded model: '", name, "' has shape ", c10::IntArrayRef(want),
                " whole here and ", c10::IntArrayRef(saved), " in the checkpoint");
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
      unit->write_piece(i, read_piece(slices, unit->names()[i], unit->parameters()[i], unit->piece_begin(i),
                                      piece.numel(), piece.scalar_type()));
    }
    unit->pieces_written();
  }
  for (auto& [name, t] : buffers) t.copy_(local_part_of(t, slices.read_whole(name)));
}

}  // namespace accel::fsdp
