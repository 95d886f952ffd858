// What a ShardingConfig can only settle at prepare(): the values that
// depend on the model, the data loader and the optimizer given there.
#include "accel/parallel/sharding_config.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include <torch/nn/module.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include "accel/util/check.h"

namespace accel {
namespace {

std::string source_of(const ShardingConfig& c) { return c.source.empty() ? "DeepSpeed config" : c.source; }

}  // namespace

std::optional<int64_t> model_hidden_size(const torch::nn::Module& model) {
  // A parameter's first two dimensions are its feature sizes (a Linear's
  // out and in, an Embedding's rows and width, a norm's width); the rest
  // are a convolution's kernel, which would outnumber them.
  std::map<int64_t, int64_t> times;
  for (const auto& p : model.parameters())
    for (int64_t d = 0; d < std::min<int64_t>(p.dim(), 2); ++d) ++times[p.size(d)];
  std::optional<int64_t> best;
  int64_t best_count = 0;
  for (const auto& [size, count] : times)  // ascending sizes: `>=` lets the larger win a tie
    if (count >= best_count) best = size, best_count = count;
  return best;
}

void fill_from_model(ShardingConfig& c, const torch::nn::Module& model) {
  if (!c.reduce_bucket_size_from_model) return;
  const auto hidden = model_hidden_size(model);
  ACCEL_CHECK_ARG(hidden.has_value(), source_of(c),
                  ": zero_optimization.reduce_bucket_size is \"auto\", which Accelerate fills with hidden_size * "
                  "hidden_size, but the model has no parameters (with a dimension) to take a hidden size from; give an "
                  "integer in place of \"auto\"");
  if (c.sharding) c.sharding->reduce_bucket_size(*hidden * *hidden);
  c.reduce_bucket_size_from_model = false;
}

void check_batch_sizes(ShardingConfig& c, int64_t micro, int64_t accumulation, int world_size) {
  const std::string where = source_of(c);
  ACCEL_CHECK_ARG(!c.train_micro_batch_size_per_gpu || *c.train_micro_batch_size_per_gpu == micro, where,
                  ": train_micro_batch_size_per_gpu is ", *c.train_micro_batch_size_per_gpu,
                  " but the prepared data loader gives each process batches of ", micro,
                  "; set it to \"auto\" or make them agree");
  const int64_t total = micro * accumulation * world_size;
  ACCEL_CHECK_ARG(!c.train_batch_size || *c.train_batch_size == total, where, ": train_batch_size is ",
                  *c.train_batch_size, " but batch ", micro, " * accumulation ", accumulation, " * processes ",
                  world_size, " = ", total, "; set it to \"auto\" or make them agree");
  c.train_micro_batch_size_per_gpu = micro;
  c.train_batch_size = total;
}

void check_optimizer(const ShardingConfig& c, const torch::optim::Optimizer& optimizer) {
  if (!c.optimizer) return;
  const auto& s = *c.optimizer;
  const std::string where = source_of(c) + ": optimizer";
  const bool is_adamw = dynamic_cast<const torch::optim::AdamW*>(&optimizer) != nullptr;
  const bool is_adam = dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr;
  ACCEL_CHECK_ARG(!s.decoupled || is_adamw, where, " is ", s.type,
                  " with decoupled weight decay (AdamW) but the optimizer given to prepare() is not a "
                  "torch::optim::AdamW");
  ACCEL_CHECK_ARG(s.decoupled || is_adam, where, " is ", s.type,
                  " with L2 weight decay (adam_w_mode false) but the optimizer given to prepare() is not a "
                  "torch::optim::Adam");
  if (optimizer.param_groups().empty()) return;
  const auto& opts = optimizer.param_groups().front().options();
  std::map<std::string, double> have;
  have["lr"] = opts.get_lr();
  if (is_adamw) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(opts);
    have["eps"] = o.eps(), have["weight_decay"] = o.weight_decay();
    have["beta1"] = std::get<0>(o.betas()), have["beta2"] = std::get<1>(o.betas());
  } else {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(opts);
    have["eps"] = o.eps(), have["weight_decay"] = o.weight_decay();
    have["beta1"] = std::get<0>(o.betas()), have["beta2"] = std::get<1>(o.betas());
  }
  // Numbers are written as std::ostream writes a double, as these messages always have been.
  for (const auto& [key, value] : s.params) {
    const double h = have.at(key);
    const bool differs = std::abs(h - value) > 1e-12 * std::max(1.0, std::abs(value));
    ACCEL_CHECK_ARG(!differs, where, ".params.", key, " is ", value, " but the optimizer given to prepare() has ", h,
                    "; set it to \"auto\" or make them agree");
  }
}

}  // namespace accel
