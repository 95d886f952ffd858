#pragma once
// The checkpoint of an optimizer over a tensor-parallel model (a mesh with
// tp > 1, DDP or nothing on its data-parallel ranks): each writing rank
// (checkpoint/model_slices.h's model_slice_writer: data-parallel rank 0 of
// each tensor-parallel group) saves its state tensors as slice files, the
// element-wise ones (AdamW's exp_avg, exp_avg_sq) as the blocks of the whole
// their parameter is, so that a run on any layout cuts its own part back:
//   tp_optimizer[_i]_rank<w>.safetensors  "state.<n>.<field>" slices of the wholes of
//                                         the same names (optimizer_state.h's numbering)
//                                         and "master.<m>" the fp32 master weights, if any
//   tp_optimizer[_i].json                 the rest (groups, step counts), from the main process
// load_state takes this checkpoint whenever a folder holds these files,
// whatever the mode of the loading run (one process included).
#include <filesystem>
#include <memory>
#include <optional>

#include "accel/checkpoint/model_slices.h"
#include "accel/checkpoint/optimizer_checkpoint.h"

namespace accel {

/// `writer`: the file this rank writes, nullopt on a replica that writes
/// none. An optimizer stepped through fp32 master weights saves them too,
/// "master.<m>" sliced as model parameter m (a run without masters skips
/// them on load; one with masters needs them). With `from_whole`, it loads instead the
/// whole state of a run without tensor parallelism (optimizer[_i].safetensors
/// and .json, full_optimizer_checkpoint's files), each rank cutting its part.
std::unique_ptr<OptimizerCheckpoint> tensor_parallel_optimizer_checkpoint(AcceleratedOptimizer& optimizer,
                                                                          std::optional<ModelSliceWriter> writer,
                                                                          bool from_whole = false);

/// Whether `dir` holds optimizer `index`'s state in this form.
bool has_tensor_parallel_optimizer_files(const std::filesystem::path& dir, size_t index);

}  // namespace accel
