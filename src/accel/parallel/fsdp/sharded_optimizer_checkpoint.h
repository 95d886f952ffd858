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
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

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

/// Whether `dir` holds optimizer `index`'s state in the sliced form above.
bool has_sliced_optimizer_files(const std::filesystem::path& dir, size_t index);

/// For a run whose parameters are not sharded (one process, DDP, tensor
/// parallel without ZeRO/FSDP): loads the sliced form into `optimizer`,
/// each parameter's state whole or cut as its tensor-parallel slice.
/// `parameters`: per parameter of the optimizer (optimizer_state.h's
/// numbering), its name in the files ("<model>/<parameter name>") and the
/// model's parameter (which says how it is cut); an optimizer stepping
/// fp32 master copies has none such (the caller refuses it). Loading only:
/// save() throws std::logic_error.
std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint_from_slices(
    torch::optim::Optimizer& optimizer, const std::vector<std::pair<std::string, torch::Tensor>>& parameters);

/// Which file of the sliced form a rank writes for an optimizer whose
/// parameters are not sharded: pipeline stages (each stage's optimizer
/// numbers its own parameters, so the state goes by name).
struct NamedSlicesWriter {
  /// Its file's number, 0 .. files - 1; -1 on a replica, which writes nothing.
  int file = -1;
  /// How many files the writers write together.
  int files = 1;
  /// Whether it writes the state of parameters no tensor-parallel plan
  /// split (one writer of each group holding the same ones does).
  bool replicated = true;
  /// Parameters ("<model>/<name>") whose state another writer saves: a
  /// tied copy on the later of its stages, equal to the earlier one's.
  std::set<std::string> left_out;
};

/// The sliced form above written from an optimizer whose parameters are
/// whole or tensor-parallel slices (`parameters` as for
/// optimizer_checkpoint_from_slices): each state tensor as the whole
/// parameter's, or as the blocks of the whole its slice is, the rest of
/// the state in the writer's .json. It loads back as
/// optimizer_checkpoint_from_slices does, so any layout whose parameters
/// are not sharded, or full_shard, reads what it writes. `masters`: for an
/// optimizer stepping fp32 master weights, the master of each of
/// `parameters` (`parameters` then name the model's parameters, which say
/// how each is cut), saved as "masters/<model>/<name>" and loaded back
/// (a folder without them refused by name); empty otherwise. Throws
/// std::invalid_argument naming a bad writer or master count.
std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint_by_names(
    torch::optim::Optimizer& optimizer, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
    std::vector<torch::Tensor> masters, NamedSlicesWriter writer);

/// Whether the sliced form in `dir` holds fp32 master weights (written by
/// optimizer_checkpoint_by_names; full_shard's own holds none).
bool has_sliced_master_weights(const std::filesystem::path& dir, size_t index);

}  // namespace accel::fsdp
