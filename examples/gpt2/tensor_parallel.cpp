#include "tensor_parallel.h"

#include "accel/util/check.h"

namespace gpt2 {

accel::TensorParallelPlan tensor_parallel_plan(bool sequence_parallel) {
  using Style = accel::TensorParallelStyle;
  if (!sequence_parallel)
    return {{"transformer.wte", "embedding_rowwise"},
            {"transformer.h.*.attn.c_attn", Style::packed_colwise(3)},
            {"transformer.h.*.attn.c_proj", "rowwise"},
            {"transformer.h.*.mlp.c_fc", "colwise"},
            {"transformer.h.*.mlp.c_proj", "rowwise"}};
  constexpr int64_t seq = 1;  // [batch, seq, n_embd]
  return {{"transformer.wte", "embedding_rowwise"},
          {"transformer.h.*.ln_1", "sequence_parallel"},
          {"transformer.h.*.attn.c_attn", Style::packed_colwise(3).on_sequence(seq)},
          {"transformer.h.*.attn.c_proj", Style("rowwise").on_sequence(seq)},
          {"transformer.h.*.ln_2", "sequence_parallel"},
          {"transformer.h.*.mlp.c_fc", Style("colwise").on_sequence(seq)},
          {"transformer.h.*.mlp.c_proj", Style("rowwise").on_sequence(seq)},
          {"transformer.ln_f", "sequence_parallel"}};
}

void parallelize_tensor(GPT2& model, const accel::ProcessGroupPtr& group, bool sequence_parallel) {
  ACCEL_CHECK_ARG(group, "GPT-2 tensor parallel: no process group");
  const auto& o = model->options();
  const int tp = group->getSize();
  // Heads are the unit of the attention split: checked here, by name,
  // rather than as c_attn's width in the generic plan's message.
  ACCEL_CHECK_ARG(o.n_head() % tp == 0, "GPT-2 tensor parallel: the tensor-parallel size ", tp,
                  " does not divide n_head = ", o.n_head(), " (each rank attends over whole heads)");
  accel::parallelize_tensor(*model, group, tensor_parallel_plan(sequence_parallel));
}

}  // namespace gpt2
