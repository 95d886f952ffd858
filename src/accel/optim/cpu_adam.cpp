#include "accel/optim/cpu_adam.h"

#include <cmath>
#include <stdexcept>

#include <ATen/Parallel.h>

#include "accel/optim/adam_state.h"
#include "accel/optim/cpu_adam_kernel.h"
#include "accel/util/check.h"

namespace accel {
namespace {

// Elements per task: large enough that a task's scalars and start-up cost
// vanish, small enough that two threads share a 1 M-element slice.
constexpr int64_t kGrain = 32 * 1024;

void check_part(const torch::Tensor& t, const char* name, int64_t numel, std::initializer_list<torch::ScalarType> ok) {
  ACCEL_CHECK_ARG(t.defined(), "cpu_adam_step: ", name, " is undefined");
  ACCEL_CHECK_ARG(t.device().is_cpu(), "cpu_adam_step: ", name, " must be on the CPU, got ", t.device().str());
  bool dtype_ok = false;
  for (auto d : ok) dtype_ok |= t.scalar_type() == d;
  ACCEL_CHECK_ARG(dtype_ok, "cpu_adam_step: ", name, " has dtype ", c10::toString(t.scalar_type()), ", expected ",
                  ok.size() == 1 ? "Float" : "Float or BFloat16 (Half for param_copy)");
  ACCEL_CHECK_ARG(t.is_contiguous() && t.layout() == torch::kStrided, "cpu_adam_step: ", name,
                  " must be a dense contiguous tensor");
  ACCEL_CHECK_ARG(t.numel() == numel, "cpu_adam_step: ", name, " has ", t.numel(), " elements, param has ", numel);
}

detail::AdamScalars scalars(const CpuAdamOptions& o, int64_t step) {
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
  detail::AdamScalars s;
  s.beta1 = static_cast<float>(beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta1 = static_cast<float>(1 - beta1);
  s.one_minus_beta2 = static_cast<float>(1 - beta2);
  s.eps = static_cast<float>(o.eps());
  s.adamw = o.adamw();
  s.amsgrad = o.amsgrad();
  s.weight_decay = o.adamw() ? 0.f : static_cast<float>(o.weight_decay());
  s.decay_factor = o.adamw() ? static_cast<float>(1 - o.lr() * o.weight_decay()) : 1.f;
  s.step_size = static_cast<float>(o.lr() / bias_correction1);
  s.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
  return s;
}

}  // namespace

CpuAdamOptions CpuAdamOptions::from(const torch::optim::AdamWOptions& o) {
  return CpuAdamOptions(o.lr())
      .betas(o.betas())
      .eps(o.eps())
      .weight_decay(o.weight_decay())
      .adamw(true)
      .amsgrad(o.amsgrad());
}

CpuAdamOptions CpuAdamOptions::from(const torch::optim::AdamOptions& o) {
  return CpuAdamOptions(o.lr())
      .betas(o.betas())
      .eps(o.eps())
      .weight_decay(o.weight_decay())
      .adamw(false)
      .amsgrad(o.amsgrad());
}

void CpuAdamOptions::check() const {
  auto bad = [](const char* what, double v, const char* expected) {
    fail<std::invalid_argument>("CpuAdamOptions: ", what, " = ", std::to_string(v), ", expected ", expected);
  };
  if (!(lr() >= 0)) bad("lr", lr(), ">= 0");
  if (!(eps() >= 0)) bad("eps", eps(), ">= 0");
  if (!(weight_decay() >= 0)) bad("weight_decay", weight_decay(), ">= 0");
  const double b1 = std::get<0>(betas()), b2 = std::get<1>(betas());
  if (!(b1 >= 0 && b1 < 1)) bad("betas[0]", b1, "in [0, 1)");
  if (!(b2 >= 0 && b2 < 1)) bad("betas[1]", b2, "in [0, 1)");
}

void cpu_adam_step(const CpuAdamOptions& options, int64_t step, const CpuAdamSlice& t) {
  options.check();
  ACCEL_CHECK_ARG(step >= 1, "cpu_adam_step: step must be >= 1, got ", step);
  ACCEL_CHECK_ARG(t.param.defined(), "cpu_adam_step: param is undefined");
  const int64_t n = t.param.numel();
  check_part(t.param, "param", n, {torch::kFloat});
  check_part(t.grad, "grad", n, {torch::kFloat, torch::kBFloat16});
  check_part(t.exp_avg, "exp_avg", n, {torch::kFloat});
  check_part(t.exp_avg_sq, "exp_avg_sq", n, {torch::kFloat});
  if (options.amsgrad()) check_part(t.max_exp_avg_sq, "max_exp_avg_sq", n, {torch::kFloat});
  if (t.param_copy.defined()) check_part(t.param_copy, "param_copy", n, {torch::kBFloat16, torch::kHalf});

  detail::AdamScalars s = scalars(options, step);
  s.grad_scale = t.grad_scale;
  detail::AdamArrays a;
  a.param = t.param.data_ptr<float>();
  a.exp_avg = t.exp_avg.data_ptr<float>();
  a.exp_avg_sq = t.exp_avg_sq.data_ptr<float>();
  if (options.amsgrad()) a.max_exp_avg_sq = t.max_exp_avg_sq.data_ptr<float>();
  a.grad = t.grad.data_ptr();
  a.grad_kind = t.grad.scalar_type() == torch::kBFloat16 ? detail::AdamGrad::bf16 : detail::AdamGrad::f32;
  if (t.param_copy.defined()) {
    a.copy = t.param_copy.data_ptr();
    a.copy_kind = t.param_copy.scalar_type() == torch::kBFloat16 ? detail::AdamCopy::bf16 : detail::AdamCopy::f16;
  }
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { detail::adam_update(s, a, begin, end); });
}

std::string cpu_adam_isa() { return detail::adam_isa(); }

namespace {

template <typename Options, typename State>
std::vector<CpuAdamTask> plan_all(torch::optim::Optimizer& optimizer, const char* name, const CpuAdamAdjust& adjust) {
  torch::NoGradGuard no_grad;
  std::vector<CpuAdamTask> tasks;
  size_t index = 0;
  for (auto& group : optimizer.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    const CpuAdamOptions options = CpuAdamOptions::from(o);
    for (auto& p : group.params()) {
      const size_t i = index++;
      if (!p.grad().defined()) continue;
      ACCEL_CHECK_ARG(p.device().is_cpu() && p.scalar_type() == torch::kFloat && p.is_contiguous(), name,
                      ": parameter ", i, " must be a contiguous fp32 CPU tensor, got ", c10::toString(p.scalar_type()),
                      " on ", p.device().str());
      ACCEL_CHECK_ARG(!p.grad().is_sparse(), name, ": parameter ", i, " has a sparse gradient (not supported)");
      auto& st = adam_state<State>(optimizer, p, o.amsgrad());
      st.step(st.step() + 1);
      CpuAdamSlice slice{p.view(-1), p.grad().contiguous().view(-1), st.exp_avg().view(-1), st.exp_avg_sq().view(-1)};
      if (o.amsgrad()) slice.max_exp_avg_sq = st.max_exp_avg_sq().view(-1);
      if (adjust) adjust(p, slice);
      tasks.push_back({p, options, st.step(), std::move(slice)});
    }
  }
  return tasks;
}

void run_all(const std::vector<CpuAdamTask>& tasks) {
  for (const auto& t : tasks) cpu_adam_step(t.options, t.step, t.slice);
}

}  // namespace

std::optional<std::vector<CpuAdamTask>> plan_cpu_adam_step(torch::optim::Optimizer& optimizer,
                                                           const CpuAdamAdjust& adjust) {
  if (dynamic_cast<torch::optim::AdamW*>(&optimizer))
    return plan_all<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(optimizer, "cpu_adam_step(AdamW)",
                                                                               adjust);
  if (dynamic_cast<torch::optim::Adam*>(&optimizer))
    return plan_all<torch::optim::AdamOptions, torch::optim::AdamParamState>(optimizer, "cpu_adam_step(Adam)", adjust);
  return std::nullopt;
}

bool cpu_adam_step(torch::optim::Optimizer& optimizer) { return cpu_adam_step(optimizer, {}); }

bool cpu_adam_step(torch::optim::Optimizer& optimizer, const CpuAdamAdjust& adjust) {
  auto tasks = plan_cpu_adam_step(optimizer, adjust);
  if (!tasks) return false;
  run_all(*tasks);
  return true;
}

torch::Tensor CpuAdamW::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  run_all(plan_all<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*this, "CpuAdamW", {}));
  return loss;
}

torch::Tensor CpuAdam::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  run_all(plan_all<torch::optim::AdamOptions, torch::optim::AdamParamState>(*this, "CpuAdam", {}));
  return loss;
}

}  // namespace accel
