#pragma once
// Tensor parallelism applied to an existing model by a plan, as
// transformers' tp_plan: module names (a "*" stands for any one name
// component, such as a layer number) mapped to how each module is split.
//
//   accel::TensorParallelPlan plan{
//       {"transformer.wte", "embedding_rowwise"},             // vocabulary rows split
//       {"transformer.h.*.attn.c_attn", accel::TensorParallelStyle::packed_colwise(3)},  // q, k, v by heads
//       {"transformer.h.*.attn.c_proj", "rowwise"},
//       {"transformer.h.*.mlp.c_fc", "colwise"},
//       {"transformer.h.*.mlp.c_proj", "rowwise"}};
//   accel::parallelize_tensor(*model, mesh, plan);   // before the optimizer is made
//
// parallelize_tensor slices the named torch::nn::Linear / Embedding
// modules' parameters in place: each keeps this rank's slice of what it held
// (shard.h), same tensor objects, same names. Build the model identically on
// every rank (same seed), then parallelize: the ranks together are the
// single-process model.
//
// LibTorch modules have no forward hooks, so the model calls its planned
// layers through the seams below (parallel_linear(c_fc, x) instead of
// c_fc(x)): they run the layer's parallel form when the plan split it and
// its own forward otherwise, so one model serves both.
//
// Styles (transformers' names):
//   colwise            Linear: weight split along out-features, output stays split
//   colwise_rep        colwise, then the output gathered (Megatron's gather_output)
//   packed_colwise     colwise over a fused projection of equal blocks (2: transformers'
//                      gate_up); packed_colwise(3) for GPT-2's fused q/k/v
//   rowwise            Linear: weight split along in-features, input arrives split,
//                      output all-reduced, bias added once after the reduce
//   rowwise_rep        rowwise with a replicated input (each rank takes its slice)
//   embedding_rowwise  Embedding: vocabulary rows split (also "vocab", "embedding");
//                      any vocabulary size (the first ranks hold one row more)
//   sequence_parallel  any module (LayerNorm, Dropout): runs on this rank's slice of
//                      the sequence (Megatron-LM's sequence parallel); its parameters
//                      stay whole and their gradients are summed over the group
//                      (each rank saw part of the sequence)
//
// Sequence parallel: colwise and rowwise styles made .on_sequence(dim) take
// their input as / leave their output as this rank's slice of dimension dim
// (all-gather before a column-parallel layer, reduce-scatter after a
// row-parallel one, whose bias gradient is then summed over the group too),
// so that the modules between them (planned sequence_parallel) see a slice
// of the sequence. The model enters and leaves that region through the seams
// enter_sequence_parallel / leave_sequence_parallel below. The sequence
// must divide by the group size (an error names both).
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "accel/dist/collectives.h"
#include "accel/ops/linear_cross_entropy.h"
#include "accel/optim/optimizer_tensors.h"
#include "accel/util/export.h"

namespace accel {

class DeviceMesh;

struct ACCEL_API TensorParallelStyle {
  enum class Kind { colwise, rowwise, embedding_rowwise, sequence_parallel };

  /// One of the names above; anything else throws std::invalid_argument
  /// naming it and listing the known ones.
  TensorParallelStyle(const std::string& name);  // NOLINT: implicit, so a plan reads as transformers'
  TensorParallelStyle(const char* name) : TensorParallelStyle(std::string(name)) {}  // NOLINT
  /// Column-parallel over a fused projection of `blocks` equal blocks.
  static TensorParallelStyle packed_colwise(int64_t blocks);

  /// The same colwise / rowwise style under sequence parallel along `dim`
  /// (see above); std::invalid_argument for another kind or a negative dim.
  TensorParallelStyle on_sequence(int64_t dim = 1) const;

  /// The name it was made from ("packed_colwise(3)" for a packed one;
  /// "colwise on sequence dim 1" after on_sequence(1)).
  std::string name() const;

  Kind kind = Kind::colwise;
  int64_t packed = 1;
  bool gather_output = false;     // colwise_rep
  bool input_is_parallel = true;  // rowwise; false for rowwise_rep
  /// >= 0: sequence parallel along this dimension (on_sequence; 1 for a
  /// sequence_parallel module, the [batch, seq, ...] layout); -1: off.
  int64_t sequence_dim = -1;
};

using TensorParallelPlan = std::vector<std::pair<std::string, TensorParallelStyle>>;

/// Shards the modules of `model` that `plan` names over `group` (see
/// above). Throws std::invalid_argument, before changing anything, naming:
/// a pattern that matches no module, a module whose type its style cannot
/// split (a LayerNorm as colwise), a dimension that does not divide by the
/// group size, a module named twice. Twice on one module is an error.
ACCEL_API void parallelize_tensor(torch::nn::Module& model, const ProcessGroupPtr& group,
                                  const TensorParallelPlan& plan);
/// Over the mesh's "tp" dimension; nothing to do when the mesh has none.
ACCEL_API void parallelize_tensor(torch::nn::Module& model, const DeviceMesh& mesh, const TensorParallelPlan& plan);

/// How parallelize_tensor split one module.
struct TensorParallelShard {
  TensorParallelStyle style;
  ProcessGroupPtr group;
  /// embedding_rowwise: this rank's first row and the full vocabulary size.
  int64_t vocab_begin = 0, vocab_size = 0;
  /// The whole size of the split dimension (out-features, in-features or vocabulary).
  int64_t full_size = 0;
};

/// The module's split, or nullopt when no plan split it.
ACCEL_API std::optional<TensorParallelShard> tensor_parallel_shard(const torch::nn::Module& module);

/// True when `parameter` is a slice made by parallelize_tensor (its
/// gradient is too: norms sum over the group); false for replicated ones.
ACCEL_API bool is_tensor_parallel_slice(const torch::Tensor& parameter);

/// The whole tensor that `parameter` is this rank's slice of, gathered from
/// every rank of its group (a collective: each rank of the group calls it
/// for the same parameters in the same order); `parameter` itself when it
/// is not a slice. What a checkpoint of a split model holds.
ACCEL_API torch::Tensor full_tensor_parallel_parameter(const torch::Tensor& parameter);
/// The same for `value`, a copy of this rank's slice that `parameter` no
/// longer is (FSDP's full_state gathers a sharded slice into a new tensor):
/// the whole of it, cut back together as `parameter` was cut; `value`
/// itself when `parameter` is not a slice. Throws naming the shapes when
/// `value` is not shaped as `parameter`.
ACCEL_API torch::Tensor full_tensor_parallel_parameter(const torch::Tensor& parameter, const torch::Tensor& value);

/// This rank's slice of `whole`, cut as parallelize_tensor cut `parameter`
/// (the inverse, for loading whole weights into a split model); `whole`
/// when `parameter` is not a slice. Throws naming the shapes when `whole`
/// does not cut to `parameter`'s shape.
ACCEL_API torch::Tensor tensor_parallel_slice_of(const torch::Tensor& parameter, const torch::Tensor& whole);

/// Where a tensor-parallel slice sits in its whole tensor, for checkpoints
/// that keep each rank's slice as it is (checkpoint/model_slices.h). The
/// slice is the concatenation along `dim` of `boxes`, each a block of the
/// whole: one box for a plain or vocabulary split, `packed` boxes for a
/// packed one (q, k and v each contribute a piece).
struct ACCEL_API TensorParallelPlacement {
  struct Box {
    std::vector<int64_t> offset, size;  // per dimension of the whole
  };
  std::vector<int64_t> whole_shape;
  int64_t dim = 0;
  std::vector<Box> boxes;
};

/// The placement of `parameter` in its whole tensor, or nullopt when it is
/// not a slice made by parallelize_tensor.
ACCEL_API std::optional<TensorParallelPlacement> tensor_parallel_placement(const torch::Tensor& parameter);

// The seams: each runs the module as its plan split it, else as itself.

/// `x` (replicated) made this rank's slice of the sequence when the plan
/// made `module` sequence_parallel (the first module of the sequence-
/// parallel region, such as the embeddings' dropout), else `x` itself.
ACCEL_API torch::Tensor enter_sequence_parallel(const torch::nn::Module& module, const torch::Tensor& x);
/// `x` (this rank's slice) gathered into the whole sequence when the plan
/// made `module` sequence_parallel (the last module of the region, such as
/// the final norm), else `x` itself. What follows is computed alike on every
/// rank, so each keeps its slice of the gradient in backward.
ACCEL_API torch::Tensor leave_sequence_parallel(const torch::nn::Module& module, const torch::Tensor& x);

/// linear(x), or its column- / row-parallel form.
ACCEL_API torch::Tensor parallel_linear(const torch::nn::Linear& linear, const torch::Tensor& x);
/// embedding(ids), or its vocabulary-parallel form (replicated output).
ACCEL_API torch::Tensor parallel_embedding(const torch::nn::Embedding& embedding, const torch::Tensor& ids);
/// The logits of an output projection tied to `embedding`: hidden @ weight^T,
/// full [.., vocab] (gathered when the vocabulary is split).
ACCEL_API torch::Tensor parallel_tied_logits(const torch::Tensor& hidden, const torch::nn::Embedding& embedding);
/// The mean cross-entropy of those logits against `targets`:
/// accel::linear_cross_entropy with `options` when the vocabulary is whole,
/// the vocabulary-parallel loss (logits never gathered; of the options it
/// takes ignore_index) when it is split.
ACCEL_API torch::Tensor parallel_tied_cross_entropy(const torch::Tensor& hidden, const torch::nn::Embedding& embedding,
                                                    const torch::Tensor& targets,
                                                    const LinearCrossEntropyOptions& options = {});

/// The gradients of `parameters` for clipping (optim/grad_norm.h's
/// clip_grad_norm_): slices made by parallelize_tensor as `sharded` over
/// their group, every other gradient `replicated` (counted once), so the
/// norm is the single-process model's. Throws when slices of different
/// groups are mixed.
ACCEL_API GradientSet tensor_parallel_gradients(const std::vector<torch::Tensor>& parameters);

}  // namespace accel
