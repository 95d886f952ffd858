#pragma once
// GPT-2 made tensor-parallel (Megatron style) by a plan (accel's
// parallel/tensor/parallelize.h), on a tensor-parallel process group:
//
//   transformer.wte          embedding_rowwise: vocabulary rows split; the output
//                            projection is tied to it, so the loss is vocabulary-parallel
//   h.*.attn.c_attn          packed_colwise(3): q, k and v each split by heads, so a rank
//                            holds whole heads of all three and attends over them alone
//   h.*.attn.c_proj          rowwise
//   h.*.mlp.c_fc             colwise
//   h.*.mlp.c_proj           rowwise
//
// With sequence_parallel (Megatron-LM's sequence parallel) the LayerNorms,
// the residual dropouts and the residual stream between the split layers
// run on this rank's slice of the sequence (dim 1 of [batch, seq, n_embd]):
//
//   h.*.ln_1, h.*.ln_2, transformer.ln_f   sequence_parallel
//   c_attn, c_fc     gather the sequence before them (reduce-scatter in backward)
//   c_proj (both)    reduce-scatter after them instead of all-reduce
//
// so each rank stores 1/tp of those activations; the norms' weights and the
// row-parallel biases get their gradients summed over the group. The model
// scatters the embeddings' output before the first ln_1 and gathers after
// ln_f (model.cpp's seams). The model's forward only: the sequence length
// must divide by the group size, generation with a KV cache is refused, and
// pipeline stages (pipeline_parallel.h) do not enter the region. With
// dropout > 0 the ranks draw the same masks for their slices (their
// generators are in step), which differs from one process's masks.
//
// The position embedding and the LayerNorms stay whole on every rank. The
// model calls these layers through accel's seams (model.cpp), so the same
// model runs whole or split. Ranks must make the model identically (same
// seed) before parallelize_tensor, and keep their random generators in
// step (same seed, same calls) for dropout outside the split regions.
//
//   gpt2::GPT2 model(gpt2::named_config("tiny"));
//   gpt2::parallelize_tensor(model, mesh.group("tp"));
#include "accel/dist/collectives.h"
#include "accel/parallel/tensor/parallelize.h"
#include "model.h"

namespace gpt2 {

/// The plan above, with sequence parallel or without.
accel::TensorParallelPlan tensor_parallel_plan(bool sequence_parallel = false);

/// Splits `model` over `group` by tensor_parallel_plan(sequence_parallel).
/// Throws std::invalid_argument naming the sizes when the group's size does
/// not divide n_head (and so n_embd and 4 * n_embd) or exceeds the vocabulary.
void parallelize_tensor(GPT2& model, const accel::ProcessGroupPtr& group, bool sequence_parallel = false);

}  // namespace gpt2
