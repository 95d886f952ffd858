#include "accel/amp/grad_scaler.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_amp_update_scale.h>

#include "accel/dist/collectives.h"

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

namespace {

std::string num(double v) { return format_double(v); }

void check(const char* where, const char* scale_name, double init_scale, double growth_factor, double backoff_factor,
           int64_t growth_interval) {
  ACCEL_CHECK_ARG(init_scale > 0 && std::isfinite(init_scale), where, ": ", scale_name, " is ", num(init_scale),
                  "; expected a finite value > 0");
  ACCEL_CHECK_ARG(growth_factor > 1 && std::isfinite(growth_factor), where, ": growth_factor is ", num(growth_factor),
                  "; expected a finite value > 1");
  ACCEL_CHECK_ARG(backoff_factor > 0 && backoff_factor < 1, where, ": backoff_factor is ", num(backoff_factor),
                  "; expected a value in (0, 1)");
  ACCEL_CHECK_ARG(growth_interval > 0, where, ": growth_interval is ", growth_interval, "; expected a value > 0");
}

void check_hysteresis(const char* where, int64_t hysteresis, double min_scale) {
  ACCEL_CHECK_ARG(hysteresis >= 1, where, ": hysteresis is ", hysteresis,
                  "; expected a value >= 1 (1: back off at every overflow)");
  ACCEL_CHECK_ARG(min_scale >= 0 && std::isfinite(min_scale), where, ": min_scale is ", num(min_scale),
                  "; expected a finite value >= 0 (0: no floor)");
}

// Gradients that the kernel may process in one call share device and dtype
// (its CUDA path is a multi-tensor launch over same-typed tensors).
struct GradBucket {
  torch::Device device;
  torch::ScalarType dtype;
  std::vector<torch::Tensor> grads;
};

}  // namespace

// ---- GradScalerState ---------------------------------------------------

std::map<std::string, torch::Tensor> GradScalerState::to_tensors() const {
  auto f64 = [](double v) { return torch::tensor(v, torch::kFloat64); };
  auto i64 = [](int64_t v) { return torch::tensor(v, torch::kInt64); };
  std::map<std::string, torch::Tensor> out{{"scale", f64(scale)},
                                           {"growth_factor", f64(growth_factor)},
                                           {"backoff_factor", f64(backoff_factor)},
                                           {"growth_interval", i64(growth_interval)},
                                           {"_growth_tracker", i64(growth_tracker)}};
  if (hysteresis != 1 || min_scale != 0) {
    out["hysteresis"] = i64(hysteresis);
    out["_hysteresis_tracker"] = i64(hysteresis_tracker);
    out["min_scale"] = f64(min_scale);
  }
  return out;
}

GradScalerState GradScalerState::from_tensors(const std::map<std::string, torch::Tensor>& tensors) {
  ACCEL_CHECK_ARG(
      !tensors.empty(),
      "GradScalerState::from_tensors: the state is empty, as saved from a disabled GradScaler; expected the keys "
      "scale, growth_factor, backoff_factor, growth_interval, _growth_tracker");
  auto get = [&](const std::string& key) -> const torch::Tensor& {
    auto it = tensors.find(key);
    ACCEL_CHECK_ARG(it != tensors.end(), "GradScalerState::from_tensors: key '", key, "' is missing");
    ACCEL_CHECK_ARG(it->second.defined() && it->second.numel() == 1, "GradScalerState::from_tensors: '", key, "' has ",
                    it->second.defined() ? it->second.numel() : 0, " elements; expected a scalar");
    return it->second;
  };
  GradScalerState s;
  s.scale = get("scale").item<double>();
  s.growth_factor = get("growth_factor").item<double>();
  s.backoff_factor = get("backoff_factor").item<double>();
  s.growth_interval = get("growth_interval").item<int64_t>();
  s.growth_tracker = get("_growth_tracker").item<int64_t>();
  // All three or none: a state without them is PyTorch's (hysteresis 1, no floor).
  const int present =
      static_cast<int>(tensors.count("hysteresis") + tensors.count("_hysteresis_tracker") + tensors.count("min_scale"));
  if (present == 3) {
    s.hysteresis = get("hysteresis").item<int64_t>();
    s.hysteresis_tracker = get("_hysteresis_tracker").item<int64_t>();
    s.min_scale = get("min_scale").item<double>();
  } else {
    ACCEL_CHECK_ARG(present == 0, "GradScalerState::from_tensors: ", present,
                    " of the keys hysteresis, _hysteresis_tracker, min_scale are present; expected all three or none");
  }
  return s;
}

// ---- GradScaler ----------------------------------------------------------

GradScaler::GradScaler(GradScalerOptions options, c10::intrusive_ptr<c10d::ProcessGroup> group)
    : options_(options),
      group_(std::move(group)),
      pending_scale_(options.init_scale()),
      hysteresis_tracker_(options.hysteresis()) {
  check("GradScaler", "init_scale", options.init_scale(), options.growth_factor(), options.backoff_factor(),
        options.growth_interval());
  check_hysteresis("GradScaler", options.hysteresis(), options.min_scale());
}

void GradScaler::lazy_init(const torch::Device& device) {
  if (scale_.defined()) return;
  scale_ = torch::full({}, pending_scale_, torch::dtype(torch::kFloat32).device(device));
  growth_tracker_ = torch::full({}, pending_growth_tracker_, torch::dtype(torch::kInt32).device(device));
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) {
  if (!enabled()) return loss;
  ACCEL_CHECK_ARG(loss.defined(), "GradScaler::scale: the loss is an undefined tensor");
  lazy_init(loss.device());
  return loss * scale_.to(loss.device(), /*non_blocking=*/true);
}

void GradScaler::unscale_(torch::optim::Optimizer& optimizer) {
  if (!enabled()) return;
  auto it = per_optimizer_.find(&optimizer);
  if (it != per_optimizer_.end()) {
    ACCEL_CHECK_STATE(it->second.stage != Stage::unscaled,
                      "GradScaler::unscale_: already called for this optimizer since the last update()");
    ACCEL_CHECK_STATE(it->second.stage != Stage::stepped,
                      "GradScaler::unscale_: called after step() for this optimizer; call update() first");
  }

  // Check every gradient before touching any, so a refused call changes nothing.
  std::vector<GradBucket> buckets;
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& grad = params[i].grad();
      if (!grad.defined()) continue;
      const std::string where = "parameter " + std::to_string(i) + " of param group " + std::to_string(g);
      ACCEL_CHECK_ARG(!grad.is_sparse(), "GradScaler::unscale_: ", where,
                      " has a sparse gradient; GradScaler supports dense gradients only");
      ACCEL_CHECK_ARG(grad.scalar_type() != torch::kHalf, "GradScaler::unscale_: ", where,
                      " has an fp16 gradient; expected fp32 parameters, with fp16 only inside autocast");
      ACCEL_CHECK_ARG(grad.scalar_type() != torch::kBFloat16, "GradScaler::unscale_: ", where,
                      " has a bf16 gradient; bf16 has fp32's range and needs no loss scaling "
                      "(disable the scaler), and ATen's CUDA unscale kernel does not take it");
      ACCEL_CHECK_ARG(grad.scalar_type() == torch::kFloat || grad.scalar_type() == torch::kDouble,
                      "GradScaler::unscale_: ", where, " has a gradient of dtype ", c10::toString(grad.scalar_type()),
                      "; expected float32 or float64");
      GradBucket* b = nullptr;
      for (auto& cand : buckets)
        if (cand.device == grad.device() && cand.dtype == grad.scalar_type()) b = &cand;
      if (!b) b = &buckets.emplace_back(GradBucket{grad.device(), grad.scalar_type(), {}});
      b->grads.push_back(grad);
    }
  }
  if (!scale_.defined()) {
    ACCEL_CHECK_STATE(!buckets.empty(),
                      "GradScaler::unscale_: the optimizer has no gradients and scale() was never called, so there "
                      "is no scale to unscale by");
    lazy_init(buckets.front().device);
  }

  // As PyTorch: the reciprocal in double, then fp32, so 1/scale is exact
  // for the power-of-two scales dynamic scaling produces.
  const auto inv_scale = scale_.to(torch::kFloat64).reciprocal().to(torch::kFloat32);
  auto found_inf = torch::zeros({}, scale_.options().dtype(torch::kFloat32));
  // One flag per device (the kernel writes to a flag on its tensors' device).
  std::vector<std::pair<torch::Device, torch::Tensor>> flags;
  for (auto& b : buckets) {
    torch::Tensor* flag = nullptr;
    for (auto& [dev, t] : flags)
      if (dev == b.device) flag = &t;
    if (!flag) {
      auto t = b.device == scale_.device() ? found_inf : torch::zeros({}, found_inf.options().device(b.device));
      flag = &flags.emplace_back(b.device, t).second;
    }
    at::_amp_foreach_non_finite_check_and_unscale_(b.grads, *flag, inv_scale.to(b.device, /*non_blocking=*/true));
  }
  for (auto& [dev, t] : flags)
    if (!t.is_same(found_inf)) found_inf.add_(t.to(found_inf.device(), /*non_blocking=*/true));
  if (group_) {
    auto flat = found_inf.view({1});
    all_reduce_(flat, ReduceOp::max, group_);
  }
  auto& rec = per_optimizer_[&optimizer];
  rec.found_inf = found_inf;
  rec.stage = Stage::unscaled;
}

bool GradScaler::step(torch::optim::Optimizer& optimizer) {
  return step(optimizer, [&optimizer] { optimizer.step(); });
}

bool GradScaler::step(torch::optim::Optimizer& optimizer, const std::function<void()>& update) {
  if (!enabled()) {
    update();
    return true;
  }
  auto it = per_optimizer_.find(&optimizer);
  ACCEL_CHECK_STATE(it == per_optimizer_.end() || it->second.stage != Stage::stepped,
                    "GradScaler::step: already called for this optimizer since the last update()");
  if (it == per_optimizer_.end() || it->second.stage == Stage::ready) unscale_(optimizer);
  auto& rec = per_optimizer_.at(&optimizer);
  // The one read-back of an iteration: whether to call the optimizer at all.
  const bool skip = rec.found_inf.item<float>() != 0.0f;
  if (!skip) update();
  rec.stage = Stage::stepped;
  return !skip;
}

void GradScaler::update() {
  if (!enabled()) return;
  torch::Tensor found;
  for (auto& [opt, rec] : per_optimizer_) {
    if (!rec.found_inf.defined()) continue;
    found = found.defined() ? found + rec.found_inf : rec.found_inf;
  }
  ACCEL_CHECK_STATE(
      found.defined(),
      "GradScaler::update: no optimizer was unscaled or stepped through this scaler since the last update()");
  if (options_.hysteresis() == 1 && options_.min_scale() == 0) {
    at::_amp_update_scale_(scale_, growth_tracker_, found, options_.growth_factor(), options_.backoff_factor(),
                           options_.growth_interval());
  } else {
    update_on_host(found.item<float>() != 0.0f);
  }
  per_optimizer_.clear();
}

void GradScaler::update_on_host(bool found_inf) {
  // _amp_update_scale_'s rule with DeepSpeed's two additions: an overflow
  // within the hysteresis only uses it up, and the backoff stops at the floor.
  double scale = scale_.item<double>();
  int64_t tracker = growth_tracker_.item<int64_t>();
  if (found_inf) {
    tracker = 0;
    if (hysteresis_tracker_ > 1)
      --hysteresis_tracker_;
    else
      scale = std::max(scale * options_.backoff_factor(), options_.min_scale());
  } else if (++tracker == options_.growth_interval()) {
    // As the kernel: an overflowing fp32 scale keeps the old one.
    const double grown = scale * options_.growth_factor();
    if (std::isfinite(static_cast<float>(grown))) scale = grown;
    tracker = 0;
    hysteresis_tracker_ = options_.hysteresis();
  }
  scale_.fill_(scale);
  growth_tracker_.fill_(tracker);
}

double GradScaler::get_scale() const {
  if (!enabled()) return 1.0;
  return scale_.defined() ? scale_.item<double>() : pending_scale_;
}

int64_t GradScaler::growth_tracker() const {
  if (!enabled()) return 0;
  return growth_tracker_.defined() ? growth_tracker_.item<int64_t>() : pending_growth_tracker_;
}

bool GradScaler::found_inf() const {
  for (const auto& [opt, rec] : per_optimizer_)
    if (rec.found_inf.defined() && rec.found_inf.item<float>() != 0.0f) return true;
  return false;
}

std::optional<GradScalerState> GradScaler::state() const {
  if (!enabled()) return std::nullopt;
  GradScalerState s;
  s.scale = get_scale();
  s.growth_tracker = growth_tracker();
  s.growth_factor = options_.growth_factor();
  s.backoff_factor = options_.backoff_factor();
  s.growth_interval = options_.growth_interval();
  s.hysteresis = options_.hysteresis();
  s.min_scale = options_.min_scale();
  s.hysteresis_tracker = hysteresis_tracker_;
  return s;
}

void GradScaler::load_state(const GradScalerState& state) {
  if (!enabled()) return;
  check("GradScaler::load_state", "scale", state.scale, state.growth_factor, state.backoff_factor,
        state.growth_interval);
  ACCEL_CHECK_ARG(state.growth_tracker >= 0, "GradScaler::load_state: growth_tracker is ", state.growth_tracker,
                  "; expected a value >= 0");
  check_hysteresis("GradScaler::load_state", state.hysteresis, state.min_scale);
  ACCEL_CHECK_ARG(state.hysteresis_tracker >= 1 && state.hysteresis_tracker <= state.hysteresis,
                  "GradScaler::load_state: hysteresis_tracker is ", state.hysteresis_tracker,
                  "; expected a value in [1, hysteresis ", state.hysteresis, "]");
  options_.growth_factor(state.growth_factor)
      .backoff_factor(state.backoff_factor)
      .growth_interval(state.growth_interval);
  options_.hysteresis(state.hysteresis).min_scale(state.min_scale);
  hysteresis_tracker_ = state.hysteresis_tracker;
  pending_scale_ = state.scale;
  pending_growth_tracker_ = state.growth_tracker;
  if (scale_.defined()) {
    scale_.fill_(state.scale);
    growth_tracker_.fill_(state.growth_tracker);
  }
}

}  // namespace accel
