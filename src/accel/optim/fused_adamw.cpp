#include "accel/optim/fused_adamw.h"

#include <torch/utils.h>

namespace accel {

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  fused_.adamw(*this);
  return loss;
}

}  // namespace accel
