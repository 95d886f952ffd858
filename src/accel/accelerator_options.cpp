#include "accel/accelerator_options.h"

#include <algorithm>
#include <stdexcept>

#include "accel/parallel/sharding_config.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {

ResolvedOptions resolve(const AcceleratorOptions& options) {
  ResolvedOptions r;
  const auto& env = options.env();
  if (options.mixed_precision()) {
    r.mixed_precision = *options.mixed_precision();
    const auto launched = env_string(env, "ACCELERATE_MIXED_PRECISION");
    // "no" is also what the launcher exports when nothing was asked for.
    const std::string asked = lower(launched.value_or("no"));
    if (asked != "no" && asked != to_string(r.mixed_precision))
      r.overridden.push_back("mixed precision: the launcher asked for '" + *launched +
                             "' (ACCELERATE_MIXED_PRECISION), the program sets '" + to_string(r.mixed_precision) +
                             "' in AcceleratorOptions, which wins");
  } else if (auto mp = env_string(env, "ACCELERATE_MIXED_PRECISION")) {
    try {
      r.mixed_precision = parse_mixed_precision(*mp);
    } catch (const std::exception& e) {
      fail<std::invalid_argument>("ACCELERATE_MIXED_PRECISION: ", e.what());
    }
  }

  ACCEL_CHECK_ARG(!(options.gradient_accumulation_plugin() && options.gradient_accumulation_steps()),
                  "Accelerator: give gradient_accumulation_steps or gradient_accumulation_plugin, not both");
  const auto launched_steps = env_int(env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS");
  if (options.gradient_accumulation_plugin()) {
    r.accumulation = *options.gradient_accumulation_plugin();
  } else {
    int64_t steps = 1;
    if (options.gradient_accumulation_steps()) {
      steps = *options.gradient_accumulation_steps();
    } else if (auto v = env_int(env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS")) {
      steps = *v;
    }
    r.accumulation.num_steps(steps);
  }
  if (launched_steps && *launched_steps != r.accumulation.num_steps())
    r.overridden.push_back("gradient accumulation: the launcher asked for " + std::to_string(*launched_steps) +
                           " steps (ACCELERATE_GRADIENT_ACCUMULATION_STEPS), the program sets " +
                           std::to_string(r.accumulation.num_steps()) + " in AcceleratorOptions, which wins");
  ACCEL_CHECK_ARG(r.accumulation.num_steps() >= 1, "Accelerator: gradient_accumulation_steps must be >= 1, got ",
                  r.accumulation.num_steps());

  r.cpu = options.cpu() ? options.cpu() : env_bool(env, "ACCELERATE_USE_CPU");
  if (options.parallelism_config()) {
    options.parallelism_config()->validate();
    r.parallelism = options.parallelism_config();
  } else {
    r.parallelism = ParallelismConfig::from_env(env);
  }
  // Sharding: what the code set, else what the launcher's variables (and a
  // DeepSpeed file they name) say; "auto" values there take the settings
  // given in code or by the launcher.
  if (options.sharding()) {
    check_sharding_options(*options.sharding());
    r.sharding = options.sharding();
    return r;
  }
  ShardingConfigContext context;
  const bool accumulation_given = options.gradient_accumulation_plugin() || options.gradient_accumulation_steps() ||
                                  env_int(env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS");
  if (accumulation_given) context.gradient_accumulation_steps = r.accumulation.num_steps();
  const bool precision_given = options.mixed_precision() || env_string(env, "ACCELERATE_MIXED_PRECISION");
  if (precision_given) context.mixed_precision = r.mixed_precision;
  context.world_size = static_cast<int>(env_int(env, "WORLD_SIZE").value_or(1));
  auto config = sharding_config_from_env(env, context);
  if (config.sharding) {
    check_sharding_options(*config.sharding);
    r.sharding = config.sharding;
  }
  if (config.mixed_precision && !options.mixed_precision()) r.mixed_precision = *config.mixed_precision;
  if (config.gradient_accumulation_steps && !options.gradient_accumulation_plugin() &&
      !options.gradient_accumulation_steps())
    r.accumulation.num_steps(*config.gradient_accumulation_steps);
  if (!config.source.empty()) r.sharding_config = std::move(config);
  return r;
}

}  // namespace accel
