#include "accel/optim/fused_adamw.h"

#include <map>
#include <stdexcept>
#include <tuple>

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adamw.h>
#include <torch/utils.h>

namespace accel {

namespace {
struct Lists {
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
};
}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
    // One launch per (device, dtype): the kernel wants uniform lists.
    std::map<std::tuple<int, int, int>, Lists> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse()) throw std::invalid_argument("FusedAdamW does not support sparse gradients");
      auto* key = p.unsafeGetTensorImpl();
      auto& slot = state()[key];
      if (!slot) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) st->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(st);
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*slot);
      auto& step = step_tensors_[key];
      if (!step.defined() || step.device() != p.device())  // first step, or state loaded from a file
        step = torch::full({}, static_cast<double>(st.step()), p.options().dtype(torch::kFloat));
      st.step(st.step() + 1);
      auto& l = buckets[{static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type())}];
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      l.exp_avgs.push_back(st.exp_avg());
      l.exp_avg_sqs.push_back(st.exp_avg_sq());
      if (o.amsgrad()) l.max_exp_avg_sqs.push_back(st.max_exp_avg_sq());
      l.steps.push_back(step);
    }
    for (auto& [kind, l] : buckets) {
      at::_foreach_add_(l.steps, 1);
      at::_fused_adamw_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, o.lr(),
                        std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(), o.amsgrad(),
                        /*maximize=*/false);
    }
  }
  return loss;
}

}  // namespace accel
