#pragma once
// The checkpoint of an optimizer prepared under full_shard / hybrid_shard:
// each rank writes its optimizer state over its pieces as slice files
// (checkpoint/tensor_slices.h), so that a run with any number of processes
// resumes it, each rank cutting its own pieces out of all ranks' files:
//   fsdp_optimizer[_i]_rank<r>.safetensors  the state tensors ("state.<n>.<field>", as
//                                           optimizer_state.h names them), each the slice
//                                           [begin, begin + numel) of "<model>/<parameter>/<field>"
//                                           (under tensor parallel, the blocks of that whole
//                                           the piece of the rank's slice covers);
//                                           metadata "accel_pieces": per optimizer parameter n,
//                                           "<model>/<parameter>", and "world_size"
//   fsdp_optimizer[_i]_rank<r>.json         the rest of the state (groups, step counts)
// Folders written before the slices existed load only on as many processes.
#include <memory>

#include "accel/checkpoint/optimizer_checkpoint.h"

namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace accel::fsdp {

class ShardedOptimizerTensors;

/// `world_size`: the files written together (every process of the job
/// writes its own); `file`: this process's file number, -1 for the rank
/// save() is given. On a device mesh with tensor parallel, the state of a
/// tensor-parallel slice's piece goes as the blocks of the whole it covers
/// (checkpoint/tensor_parallel_slices.h), and the state of the parameters
/// no plan split only where `unsplit_parameters` (tensor-parallel
/// coordinate 0), so that any layout reloads it.
std::unique_ptr<OptimizerCheckpoint> sharded_optimizer_checkpoint(torch::optim::Optimizer& optimizer,
                                                                  const ShardedOptimizerTensors& tensors,
                                                                  int world_size, int file = -1,
                                                                  bool unsplit_parameters = true);

}  // namespace accel::fsdp
