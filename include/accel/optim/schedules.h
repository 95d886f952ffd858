#pragma once
// The learning-rate schedules Transformers users know (transformers 5.x,
// transformers/optimization.py), as LrLambdas for accel::LRScheduler, and
// get_scheduler, which picks one by name with Transformers' argument rules.
//
// Each lambda returns the factor for the optimizer's base lr at a step, with
// Transformers' formula and order of floating-point operations, so the lrs
// equal a Python run's (the peer test compares them). Warmup everywhere is
// linear from 0: step / max(1, num_warmup_steps) for step < num_warmup_steps.
//
// Inputs Transformers would accept but that only produce nonsense or a
// division by zero later (negative step counts, a non-positive timescale,
// polynomial decay over zero steps) throw std::invalid_argument here,
// naming the value.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include "accel/optim/lr_scheduler.h"
#include "accel/util/export.h"

namespace accel {

namespace schedules {

/// 1 at every step.
ACCEL_API LrLambda constant();

/// Warmup, then 1.
ACCEL_API LrLambda constant_with_warmup(int64_t num_warmup_steps);

/// Warmup, then linear decay to 0 at num_training_steps (0 afterwards).
ACCEL_API LrLambda linear_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps);

/// Warmup, then 0.5 * (1 + cos(pi * 2 * num_cycles * progress)), clipped at
/// 0, where progress runs from 0 at the end of warmup to 1 at
/// num_training_steps. The default half cycle decays from 1 to 0.
ACCEL_API LrLambda cosine_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps, double num_cycles = 0.5);

/// Warmup, then num_cycles half-cosine decays from 1 to 0, each restarting
/// at 1; 0 from num_training_steps on.
ACCEL_API LrLambda cosine_with_hard_restarts_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps,
                                                         int64_t num_cycles = 1);

/// Warmup, then lr_end + (lr_init - lr_end) * (1 - progress)^power, divided
/// by lr_init (the scheduler multiplies by the base lr again); lr_end /
/// lr_init after num_training_steps. lr_init is the optimizer's lr; lr_end
/// must be below it (as Transformers checks), and num_training_steps must
/// differ from num_warmup_steps (Transformers divides by their difference).
ACCEL_API LrLambda polynomial_decay_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps, double lr_init,
                                                double lr_end = 1e-7, double power = 1.0);

/// Warmup, then 1 / sqrt((step + timescale - num_warmup_steps) / timescale).
/// timescale defaults to num_warmup_steps, or 10'000 when that is 0.
ACCEL_API LrLambda inverse_sqrt(int64_t num_warmup_steps, std::optional<int64_t> timescale = std::nullopt);

}  // namespace schedules

/// Transformers' SchedulerType values that are LambdaLR schedules (its
/// reduce_lr_on_plateau, cosine_with_min_lr, warmup_stable_decay and greedy
/// are not here).
enum class SchedulerType {
  linear,
  cosine,
  cosine_with_restarts,
  polynomial,
  constant,
  constant_with_warmup,
  inverse_sqrt
};

/// From Transformers' names ("linear", "cosine", "cosine_with_restarts",
/// "polynomial", "constant", "constant_with_warmup", "inverse_sqrt");
/// anything else throws std::invalid_argument listing them.
ACCEL_API SchedulerType parse_scheduler_type(const std::string& name);
ACCEL_API std::string to_string(SchedulerType type);

/// The schedule-specific arguments (Transformers' scheduler_specific_kwargs).
/// Unset means the schedule's default; setting one the chosen schedule does
/// not take throws std::invalid_argument, as Transformers raises TypeError.
struct ACCEL_API SchedulerKwargs {
  /// cosine (default 0.5) and cosine_with_restarts (default 1, must be a
  /// whole number there).
  TORCH_ARG(std::optional<double>, num_cycles) = std::nullopt;
  /// polynomial (defaults 1e-7 and 1.0).
  TORCH_ARG(std::optional<double>, lr_end) = std::nullopt;
  TORCH_ARG(std::optional<double>, power) = std::nullopt;
  /// inverse_sqrt (default: num_warmup_steps, or 10'000 when that is 0).
  TORCH_ARG(std::optional<int64_t>, timescale) = std::nullopt;
};

/// A scheduler of the given type on `optimizer`, as transformers'
/// get_scheduler builds it. constant needs no step counts;
/// constant_with_warmup and inverse_sqrt need num_warmup_steps; the others
/// need both. A missing one throws std::invalid_argument naming it and the
/// schedule. polynomial's lr_init is the optimizer's default lr
/// (optimizer.defaults().get_lr(), Transformers' optimizer.defaults["lr"]),
/// not a param group's: they differ only when groups were given their own lr.
ACCEL_API std::shared_ptr<LRScheduler> get_scheduler(SchedulerType type, torch::optim::Optimizer& optimizer,
                                                     std::optional<int64_t> num_warmup_steps = std::nullopt,
                                                     std::optional<int64_t> num_training_steps = std::nullopt,
                                                     const SchedulerKwargs& kwargs = {});
ACCEL_API std::shared_ptr<LRScheduler> get_scheduler(const std::string& name, torch::optim::Optimizer& optimizer,
                                                     std::optional<int64_t> num_warmup_steps = std::nullopt,
                                                     std::optional<int64_t> num_training_steps = std::nullopt,
                                                     const SchedulerKwargs& kwargs = {});

}  // namespace accel
