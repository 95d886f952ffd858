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

/// The plan above.
accel::TensorParallelPlan tensor_parallel_plan();

/// Splits `model` over `group` by tensor_parallel_plan(). Throws
/// std::invalid_argument naming the sizes when the group's size does not
/// divide n_head (and so n_embd and 4 * n_embd) or exceeds the vocabulary.
void parallelize_tensor(GPT2& model, const accel::ProcessGroupPtr& group);

}  // namespace gpt2
