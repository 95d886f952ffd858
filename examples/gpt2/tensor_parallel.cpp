#include "tensor_parallel.h"

#include "accel/util/check.h"

namespace gpt2 {

accel::TensorParallelPlan tensor_parallel_plan() {
  return {{"transformer.wte", "embedding_rowwise"},
          {"transformer.h.*.attn.c_attn", accel::TensorParallelStyle::packed_colwise(3)},
          {"transformer.h.*.attn.c_proj", "rowwise"},
          {"transformer.h.*.mlp.c_fc", "colwise"},
          {"transformer.h.*.mlp.c_proj", "rowwise"}};
}

void parallelize_tensor(GPT2& model, const accel::ProcessGroupPtr& group) {
  ACCEL_CHECK_ARG(group, "GPT-2 tensor parallel: no process group");
  const auto& o = model->options();
  const int tp = group->getSize();
  // Heads are the unit of the attention split: checked here, by name,
  // rather than as c_attn's width in the generic plan's message.
  ACCEL_CHECK_ARG(o.n_head() % tp == 0, "GPT-2 tensor parallel: the tensor-parallel size ", tp,
                  " does not divide n_head = ", o.n_head(), " (each rank attends over whole heads)");
  accel::parallelize_tensor(*model, group, tensor_parallel_plan());
}

}  // namespace gpt2
