#include "accel/optim/fused_step.h"

#include "accel/optim/adam_state.h"
#include "accel/optim/fused_adamw.h"
#include "accel/util/check.h"

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <typeinfo>
#include <vector>

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <torch/utils.h>

namespace accel {

namespace {

// The kernels want lists of one device and dtype.
using BucketKey = std::tuple<int, int, int, bool>;
BucketKey bucket_key(const torch::Tensor& p, bool flag = false) {
  return {static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type()), flag};
}

void check_dense(const torch::Tensor& p, const char* optimizer) {
  ACCEL_CHECK_ARG(!p.grad().is_sparse(), "FusedStep: ", optimizer,
                  " got a sparse gradient; the fused kernels take dense gradients only");
}

struct AdamLists {
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
};

struct SgdLists {
  std::vector<torch::Tensor> params, grads, buffers;
};

}  // namespace

bool FusedStep::supports(const torch::optim::Optimizer& optimizer) {
  const auto& type = typeid(optimizer);
  return type == typeid(torch::optim::Adam) || type == typeid(torch::optim::AdamW) ||
         type == typeid(torch::optim::SGD) || type == typeid(FusedAdamW);
}

bool FusedStep::step_on_cuda(torch::optim::Optimizer& optimizer) {
  if (!supports(optimizer)) return false;
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params())
      if (p.grad().defined() && (!p.is_cuda() || p.grad().is_sparse())) return false;
  if (auto* adamw_opt = dynamic_cast<torch::optim::AdamW*>(&optimizer))
    adamw(*adamw_opt);
  else if (auto* adam_opt = dynamic_cast<torch::optim::Adam*>(&optimizer))
    adam(*adam_opt);
  else
    sgd(dynamic_cast<torch::optim::SGD&>(optimizer));
  return true;
}

torch::Tensor& FusedStep::step_tensor(const torch::Tensor& param, int64_t count) {
  auto& s = steps_[param.unsafeGetTensorImpl()];
  if (!s.tensor.defined() || s.value != count || s.tensor.device() != param.device())
    s.tensor = torch::full({}, static_cast<double>(count), param.options().dtype(torch::kFloat));
  s.value = count + 1;
  return s.tensor;
}

torch::Tensor& FusedStep::lr_tensor(size_t group, const torch::Tensor& like, double lr) {
  auto& t = lr_tensors_[{group, like.device().str()}];
  // float: the kernels read the tensor as float.
  if (!t.defined()) t = torch::full({}, lr, like.options().dtype(torch::kFloat));
  return t;
}

namespace {
double group_lr(const torch::optim::OptimizerParamGroup& group) { return group.options().get_lr(); }
}  // namespace

void FusedStep::refresh_lr(torch::optim::Optimizer& optimizer) {
  torch::NoGradGuard no_grad;
  auto& groups = optimizer.param_groups();
  for (auto& [key, t] : lr_tensors_)
    if (key.first < groups.size()) t.fill_(group_lr(groups[key.first]));
}

void FusedStep::advance_host_steps(torch::optim::Optimizer& optimizer) {
  auto& state = optimizer.state();
  for (const void* p : last_stepped_) {
    auto it = state.find(const_cast<void*>(p));
    if (it == state.end() || !it->second) continue;
    auto& st = *it->second;
    if (auto* a = dynamic_cast<torch::optim::AdamWParamState*>(&st)) a->step(a->step() + 1);
    if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(&st)) a->step(a->step() + 1);
    auto s = steps_.find(p);
    if (s != steps_.end()) s->second.value += 1;
  }
}

template <typename Options, typename State>
void FusedStep::adam_family(torch::optim::Optimizer& optimizer, bool decoupled_weight_decay) {
  torch::NoGradGuard no_grad;
  last_stepped_.clear();
  size_t group_index = 0;
  for (auto& group : optimizer.param_groups()) {
    const size_t gi = group_index++;
    auto& o = static_cast<Options&>(group.options());
    std::map<BucketKey, AdamLists> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      check_dense(p, decoupled_weight_decay ? "AdamW" : "Adam");
      auto& st = adam_state<State>(optimizer, p, o.amsgrad());
      last_stepped_.push_back(p.unsafeGetTensorImpl());
      auto& l = buckets[bucket_key(p)];
      l.steps.push_back(step_tensor(p, st.step()));
      st.step(st.step() + 1);
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      l.exp_avgs.push_back(st.exp_avg());
      l.exp_avg_sqs.push_back(st.exp_avg_sq());
      if (o.amsgrad()) l.max_exp_avg_sqs.push_back(st.max_exp_avg_sq());
    }
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& [key, l] : buckets) {
      at::_foreach_add_(l.steps, 1);
      if (device_lr_) {
        const auto& lr = lr_tensor(gi, l.params.front(), o.lr());
        if (decoupled_weight_decay)
          at::_fused_adamw_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, lr, beta1, beta2,
                            o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
        else
          at::_fused_adam_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, lr, beta1, beta2,
                           o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
        continue;
      }
      if (decoupled_weight_decay)
        at::_fused_adamw_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, o.lr(), beta1,
                          beta2, o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
      else
        at::_fused_adam_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, o.lr(), beta1, beta2,
                         o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
    }
  }
}

void FusedStep::adam(torch::optim::Adam& optimizer) {
  adam_family<torch::optim::AdamOptions, torch::optim::AdamParamState>(optimizer, false);
}

void FusedStep::adamw(torch::optim::AdamW& optimizer) {
  adam_family<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(optimizer, true);
}

void FusedStep::sgd(torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  last_stepped_.clear();
  size_t group_index = 0;
  for (auto& group : optimizer.param_groups()) {
    const size_t gi = group_index++;
    auto& o = static_cast<torch::optim::SGDOptions&>(group.options());
    // Parameters without a momentum buffer yet take the first-step form
    // (buffer = gradient), as LibTorch's step() does; they get their own launch.
    std::map<BucketKey, SgdLists> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      check_dense(p, "SGD");
      bool first = false;
      torch::Tensor buffer;
      if (o.momentum() != 0) {
        auto& slot = optimizer.state()[p.unsafeGetTensorImpl()];
        if (!slot) {
          auto st = std::make_unique<torch::optim::SGDParamState>();
          st->momentum_buffer(torch::empty_like(p, torch::MemoryFormat::Preserve));
          slot = std::move(st);
          first = true;
        }
        buffer = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
      }
      auto& l = buckets[bucket_key(p, first)];
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      if (buffer.defined()) l.buffers.push_back(buffer);
    }
    for (auto& [key, l] : buckets) {
      if (device_lr_)
        at::_fused_sgd_(l.params, l.grads, l.buffers, o.weight_decay(), o.momentum(),
                        lr_tensor(gi, l.params.front(), o.lr()), o.dampening(), o.nesterov(), /*maximize=*/false,
                        /*is_first_step=*/std::get<3>(key));
      else
        at::_fused_sgd_(l.params, l.grads, l.buffers, o.weight_decay(), o.momentum(), o.lr(), o.dampening(),
                        o.nesterov(), /*maximize=*/false, /*is_first_step=*/std::get<3>(key));
    }
  }
}

}  // namespace accel
