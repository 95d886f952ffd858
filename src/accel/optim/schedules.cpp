#include "accel/optim/schedules.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <utility>

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

namespace {

std::string num(double v) { return format_double(v); }

void require_non_negative(const char* what, int64_t steps, const char* schedule) {
  ACCEL_CHECK_ARG(steps >= 0, schedule, ": ", what, " is ", steps, "; expected a count >= 0");
}

// The linear ramp every schedule starts with. Callers check step < warmup.
double warmup_factor(int64_t step, int64_t num_warmup_steps) {
  return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, num_warmup_steps));
}

// Fraction of the post-warmup span done at `step` (may exceed 1 past the end).
double progress(int64_t step, int64_t num_warmup_steps, int64_t num_training_steps) {
  return static_cast<double>(step - num_warmup_steps) /
         static_cast<double>(std::max<int64_t>(1, num_training_steps - num_warmup_steps));
}

}  // namespace

namespace schedules {

LrLambda constant() {
  return [](int64_t) { return 1.0; };
}

LrLambda constant_with_warmup(int64_t num_warmup_steps) {
  require_non_negative("num_warmup_steps", num_warmup_steps, "constant_with_warmup");
  return [=](int64_t step) { return step < num_warmup_steps ? warmup_factor(step, num_warmup_steps) : 1.0; };
}

LrLambda linear_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps) {
  require_non_negative("num_warmup_steps", num_warmup_steps, "linear_with_warmup");
  require_non_negative("num_training_steps", num_training_steps, "linear_with_warmup");
  return [=](int64_t step) {
    if (step < num_warmup_steps) return warmup_factor(step, num_warmup_steps);
    return std::max(0.0, static_cast<double>(num_training_steps - step) /
                             static_cast<double>(std::max<int64_t>(1, num_training_steps - num_warmup_steps)));
  };
}

LrLambda cosine_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps, double num_cycles) {
  require_non_negative("num_warmup_steps", num_warmup_steps, "cosine_with_warmup");
  require_non_negative("num_training_steps", num_training_steps, "cosine_with_warmup");
  ACCEL_CHECK_ARG(std::isfinite(num_cycles) && num_cycles >= 0, "cosine_with_warmup: num_cycles is ", num(num_cycles),
                  "; expected a finite value >= 0");
  return [=](int64_t step) {
    if (step < num_warmup_steps) return warmup_factor(step, num_warmup_steps);
    const double p = progress(step, num_warmup_steps, num_training_steps);
    // Left to right as in Python: ((pi * cycles) * 2) * progress.
    return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * p)));
  };
}

LrLambda cosine_with_hard_restarts_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps,
                                               int64_t num_cycles) {
  require_non_negative("num_warmup_steps", num_warmup_steps, "cosine_with_hard_restarts_with_warmup");
  require_non_negative("num_training_steps", num_training_steps, "cosine_with_hard_restarts_with_warmup");
  require_non_negative("num_cycles", num_cycles, "cosine_with_hard_restarts_with_warmup");
  return [=](int64_t step) {
    if (step < num_warmup_steps) return warmup_factor(step, num_warmup_steps);
    const double p = progress(step, num_warmup_steps, num_training_steps);
    if (p >= 1.0) return 0.0;
    // Both operands are >= 0, where fmod equals Python's float %.
    return std::max(0.0,
                    0.5 * (1.0 + std::cos(std::numbers::pi * std::fmod(static_cast<double>(num_cycles) * p, 1.0))));
  };
}

LrLambda polynomial_decay_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps, double lr_init,
                                      double lr_end, double power) {
  const char* name = "polynomial_decay_with_warmup";
  require_non_negative("num_warmup_steps", num_warmup_steps, name);
  require_non_negative("num_training_steps", num_training_steps, name);
  ACCEL_CHECK_ARG(lr_init > lr_end, name, ": lr_end (", num(lr_end), ") must be smaller than the initial lr (",
                  num(lr_init), ")");
  ACCEL_CHECK_ARG(lr_init > 0 && std::isfinite(lr_init), name, ": the initial lr is ", num(lr_init),
                  "; expected a finite value > 0 (the factors divide by it)");
  ACCEL_CHECK_ARG(std::isfinite(power) && power >= 0, name, ": power is ", num(power),
                  "; expected a finite value >= 0");
  ACCEL_CHECK_ARG(num_training_steps != num_warmup_steps, name, ": num_training_steps (", num_training_steps,
                  ") equals num_warmup_steps; expected more training steps than warmup steps "
                  "(the decay spans their difference)");
  return [=](int64_t step) {
    if (step < num_warmup_steps) return warmup_factor(step, num_warmup_steps);
    if (step > num_training_steps) return lr_end / lr_init;
    const double lr_range = lr_init - lr_end;
    const int64_t decay_steps = num_training_steps - num_warmup_steps;
    const double pct_remaining = 1 - static_cast<double>(step - num_warmup_steps) / static_cast<double>(decay_steps);
    const double decay = lr_range * std::pow(pct_remaining, power) + lr_end;
    return decay / lr_init;
  };
}

LrLambda inverse_sqrt(int64_t num_warmup_steps, std::optional<int64_t> timescale) {
  require_non_negative("num_warmup_steps", num_warmup_steps, "inverse_sqrt");
  // Transformers: `timescale = num_warmup_steps or 10_000`.
  const int64_t ts = timescale.value_or(num_warmup_steps != 0 ? num_warmup_steps : 10'000);
  ACCEL_CHECK_ARG(ts > 0, "inverse_sqrt: timescale is ", ts, "; expected a value > 0");
  return [=](int64_t step) {
    if (step < num_warmup_steps) return warmup_factor(step, num_warmup_steps);
    const int64_t shift = ts - num_warmup_steps;
    return 1.0 / std::sqrt(static_cast<double>(step + shift) / static_cast<double>(ts));
  };
}

}  // namespace schedules

namespace {

constexpr std::array<std::pair<SchedulerType, const char*>, 7> kNames{{
    {SchedulerType::linear, "linear"},
    {SchedulerType::cosine, "cosine"},
    {SchedulerType::cosine_with_restarts, "cosine_with_restarts"},
    {SchedulerType::polynomial, "polynomial"},
    {SchedulerType::constant, "constant"},
    {SchedulerType::constant_with_warmup, "constant_with_warmup"},
    {SchedulerType::inverse_sqrt, "inverse_sqrt"},
}};

}  // namespace

SchedulerType parse_scheduler_type(const std::string& name) {
  for (const auto& [type, n] : kNames)
    if (name == n) return type;
  std::string allowed;
  for (const auto& [type, n] : kNames) allowed += (allowed.empty() ? "'" : ", '") + std::string(n) + "'";
  fail<std::invalid_argument>("unknown scheduler type '", name, "': expected one of ", allowed);
}

std::string to_string(SchedulerType type) {
  for (const auto& [t, n] : kNames)
    if (t == type) return n;
  fail<std::invalid_argument>("to_string: invalid SchedulerType value ", static_cast<int>(type));
}

std::shared_ptr<LRScheduler> get_scheduler(SchedulerType type, torch::optim::Optimizer& optimizer,
                                           std::optional<int64_t> num_warmup_steps,
                                           std::optional<int64_t> num_training_steps, const SchedulerKwargs& kwargs) {
  const std::string name = to_string(type);
  // Transformers raises TypeError for a keyword the schedule function lacks.
  auto only = [&](bool num_cycles, bool polynomial, bool timescale) {
    auto refuse = [&](bool set, bool allowed, const char* field) {
      ACCEL_CHECK_ARG(!set || allowed, "get_scheduler: '", name, "' takes no ", field, " argument");
    };
    refuse(kwargs.num_cycles().has_value(), num_cycles, "num_cycles");
    refuse(kwargs.lr_end().has_value(), polynomial, "lr_end");
    refuse(kwargs.power().has_value(), polynomial, "power");
    refuse(kwargs.timescale().has_value(), timescale, "timescale");
  };
  auto make = [&](LrLambda f) { return std::make_shared<LRScheduler>(optimizer, std::move(f)); };

  if (type == SchedulerType::constant) {
    only(false, false, false);
    return make(schedules::constant());
  }
  ACCEL_CHECK_ARG(num_warmup_steps, "get_scheduler: '", name, "' requires num_warmup_steps, which was not given");
  const int64_t warmup = *num_warmup_steps;
  if (type == SchedulerType::constant_with_warmup) {
    only(false, false, false);
    return make(schedules::constant_with_warmup(warmup));
  }
  if (type == SchedulerType::inverse_sqrt) {
    only(false, false, true);
    return make(schedules::inverse_sqrt(warmup, kwargs.timescale()));
  }
  ACCEL_CHECK_ARG(num_training_steps, "get_scheduler: '", name, "' requires num_training_steps, which was not given");
  const int64_t training = *num_training_steps;
  switch (type) {
    case SchedulerType::linear: only(false, false, false); return make(schedules::linear_with_warmup(warmup, training));
    case SchedulerType::cosine:
      only(true, false, false);
      return make(schedules::cosine_with_warmup(warmup, training, kwargs.num_cycles().value_or(0.5)));
    case SchedulerType::cosine_with_restarts: {
      only(true, false, false);
      const double cycles = kwargs.num_cycles().value_or(1.0);
      ACCEL_CHECK_ARG(cycles == std::floor(cycles) && std::isfinite(cycles),
                      "get_scheduler: 'cosine_with_restarts' takes a whole number of cycles, got ", num(cycles));
      return make(schedules::cosine_with_hard_restarts_with_warmup(warmup, training, static_cast<int64_t>(cycles)));
    }
    case SchedulerType::polynomial:
      only(false, true, false);
      return make(schedules::polynomial_decay_with_warmup(warmup, training, optimizer.defaults().get_lr(),
                                                          kwargs.lr_end().value_or(1e-7),
                                                          kwargs.power().value_or(1.0)));
    default: break;
  }
  fail<std::logic_error>("get_scheduler: unhandled scheduler type '", name, "'");
}

std::shared_ptr<LRScheduler> get_scheduler(const std::string& name, torch::optim::Optimizer& optimizer,
                                           std::optional<int64_t> num_warmup_steps,
                                           std::optional<int64_t> num_training_steps, const SchedulerKwargs& kwargs) {
  return get_scheduler(parse_scheduler_type(name), optimizer, num_warmup_steps, num_training_steps, kwargs);
}

}  // namespace accel
