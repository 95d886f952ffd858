#pragma once
// Checkpoints of a model split over ranks (tensor-parallel slices, pipeline
// stages) written by each rank as it holds them: no gather, and a folder
// that any other layout loads or that `accel merge-weights` joins into one
// model.safetensors.
//
// Each writing rank saves the tensors it holds under their names in the
// whole model as a slice file (src/accel/checkpoint/tensor_slices.h, the
// format of full_shard's SHARDED_STATE_DICT): a tensor-parallel slice as the
// block(s) of the whole it is (a packed q/k/v slice as three blocks, a
// vocabulary split as its rows), anything else whole. The writers' files
// together hold every tensor of the model:
//   <dir>/model_fsdp_rank<w>.safetensors    w = 0 .. writers - 1
//
// A pipeline of tp x pp ranks (examples/gpt2/pipeline_parallel.h):
//   auto stage = gpt2::pipeline_stage(model, mesh.group("pp"));
//   ... train ...
//   accel::save_model_slices(*model, mesh, "ckpt");   // every rank; replicas write nothing
//   // accel merge-weights ckpt merged   ->  merged/model.safetensors, the unsplit model
//
// Accelerator::save_state writes a tensor-parallel model the same way, and
// load_state reads it back on any layout through load_model_slices.
#include <filesystem>
#include <optional>
#include <vector>

#include <torch/nn/module.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

class DeviceMesh;

/// Which of a split model's files one rank writes.
struct ACCEL_API ModelSliceWriter {
  /// Its file's number, 0 .. count - 1.
  int index = 0;
  /// How many files the writers write together (the "world_size" the files
  /// record, which merge-weights and loaders check every file against).
  int count = 1;
  /// Whether it also writes the tensors no tensor-parallel plan split (one
  /// writer of each group of ranks holding the same ones does, so that the
  /// folder holds them once).
  bool replicated = true;
};

/// The writer a rank of `mesh` is: ranks of data-parallel (and context-
/// parallel) coordinate 0 write, file pp_coordinate * tp_size +
/// tp_coordinate of pp_size * tp_size, the tensors left whole from tp
/// coordinate 0; nullopt for a data-parallel replica, which writes nothing.
ACCEL_API std::optional<ModelSliceWriter> model_slice_writer(const DeviceMesh& mesh);

/// Writes what this rank holds of `model` (parameters and buffers, by their
/// names in `model`) to `file`, through a temporary name. Tensors with no
/// elements are skipped: a pipeline stage keeps the other stages' parameters
/// as empty tensors. Throws std::invalid_argument naming a bad writer.
ACCEL_API void save_model_slices(const torch::nn::Module& model, const std::filesystem::path& file,
                                 const ModelSliceWriter& writer);

/// Over a mesh: model_slice_writer(mesh)'s file in `dir` (made if missing),
/// nothing on the replicas. Not a collective; the caller waits for every
/// rank (a barrier) before reading the folder.
ACCEL_API void save_model_slices(const torch::nn::Module& model, const DeviceMesh& mesh,
                                 const std::filesystem::path& dir);

/// The slice files of model `model_index` in `dir`: model_fsdp_rank<w> (or
/// model_<i>_fsdp_rank<w>) for every w the first file's world_size counts.
/// Throws std::runtime_error naming the folder and the missing files.
ACCEL_API std::vector<std::filesystem::path> model_slice_files(const std::filesystem::path& dir,
                                                               size_t model_index = 0);

/// Copies into `model`, whatever its own split, its part of every tensor
/// from slice files written by any layout: whole tensors whole, each
/// tensor-parallel slice cut from its whole as parallelize_tensor cut it.
/// Checks every tensor first (present, whole shape) and throws
/// std::runtime_error naming the tensor, leaving `model` as it was.
ACCEL_API void load_model_slices(torch::nn::Module& model, const std::vector<std::filesystem::path>& files);

/// The same from whole weights (a checkpoint saved unsplit, read with
/// load_checkpoint): each tensor of `model` takes its part of the tensor of
/// its name. `source` names the checkpoint in errors.
ACCEL_API void load_model_parts(torch::nn::Module& model, const safetensors::OrderedTensors& whole,
                                const std::string& source);

}  // namespace accel
