#pragma once
// The training problem the parameter-sharding tests share
// (tests/dist/fsdp*_test.cpp): a stack of units (support/unit_stack.h) on
// 256 samples, a two-group AdamW (or SGD with momentum), the one-process
// plain-LibTorch reference on the global batch, and a Trainer that trains
// through the Accelerator under full_shard / hybrid_shard as a user writes
// it, each rank on its rows.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <optional>

#include "accel/accelerator.h"
#include "accel/big_model/empty_init.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "support/distributed.h"
#include "support/tensors.h"
#include "support/unit_stack.h"

namespace accel::testing::fsdp_training {

using namespace accel::testing::unit_stack;
namespace F = torch::nn::functional;

inline constexpr int64_t kRows = 2;  // rows per rank per micro-batch
inline constexpr int64_t kSamples = 256;

struct Variant {
  int world = 2;
  int64_t accumulation = 1;
  double clip = 0;
  bool reshard_after_forward = true;
  int reshard_slices = 0;  // > 0: reshard_after_forward as this int (a slice kept across that many ranks)
  bool freeze_block = false;
  WrapPolicy policy = WrapPolicy::transformer_based;
  int hybrid_shard_size = 0;                             // > 0: hybrid_shard in groups of that many ranks
  std::optional<ParallelismConfig> mesh = std::nullopt;  // AcceleratorOptions::parallelism_config
  bool offload_optimizer = false;                        // shards and optimizer state in host memory
  bool offload_param = false;                            // and the gathers' copies too
  bool sgd = false;            // SGD with momentum instead of AdamW (stepped by its own step())
  bool checkpoint = false;     // activation checkpointing at the blocks
  bool sharded_state = false;  // save_state under SHARDED_STATE_DICT
  bool zero2 = false;          // shard_grad_op (ZeRO-2) instead: nothing sharded at the units
  BackwardPrefetch backward_prefetch = BackwardPrefetch::none;
  bool forward_prefetch = false;
  int64_t max_live_parameters = 0;
  bool meta_init = false;                // every rank but the main one builds the model on the meta device
  std::filesystem::path nvme_path = {};  // not empty: the optimizer state in files there (offload_optimizer nvme)
  bool bf16 = false;                     // mixed_precision bf16: the units gathered in bf16 (MixedPrecisionPolicy)
  bool reduce_bf16 = false;              // and their gradients reduced in bf16
  // Not empty: the parameter shards in files there (offload_param nvme), the
  // units past the first max_in_cpu shard elements.
  std::filesystem::path param_nvme_path = {};
  int64_t max_in_cpu = 0;
};

inline const torch::Tensor& features() {
  static const torch::Tensor x = [] {
    return torch::randn({kSamples, 6}, at::make_generator<at::CPUGeneratorImpl>(11));
  }();
  return x;
}
inline const torch::Tensor& labels() {
  static const torch::Tensor y = [] {
    return torch::randint(0, 3, {kSamples}, at::make_generator<at::CPUGeneratorImpl>(12));
  }();
  return y;
}

// Block 0's norm frozen, as a user freezes part of a model.
inline void freeze(Stack& net) {
  for (auto& p : net->blocks[0]->ln->parameters()) p.set_requires_grad(false);
}

// AdamW (or SGD) in two groups, by name: no weight decay for biases and norms.
inline std::shared_ptr<torch::optim::Optimizer> make_optimizer(Stack& net, bool sgd = false) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : net->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    const bool plain = item.key().ends_with(".bias") || item.key().find(".ln.") != std::string::npos;
    (plain ? no_decay : decay).push_back(item.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (sgd) {
    using O = torch::optim::SGDOptions;
    groups.emplace_back(decay, std::make_unique<O>(O(0.05).momentum(0.9).weight_decay(0.1)));
    groups.emplace_back(no_decay, std::make_unique<O>(O(0.05).momentum(0.9)));
    return std::make_shared<torch::optim::SGD>(groups, O(0.05));
  }
  groups.emplace_back(decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).weight_decay(0.1)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).weight_decay(0)));
  return std::make_shared<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(0.01));
}

struct Result {
  std::map<std::string, torch::Tensor> params;
  std::vector<double> norms;
};

inline double max_diff(const std::map<std::string, torch::Tensor>& got,
                       const std::map<std::string, torch::Tensor>& want) {
  EXPECT_EQ(got.size(), want.size());
  double d = 0;
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    d = std::max(d, accel::testing::max_diff(it->second, t));
  }
  return d;
}

// One process, plain LibTorch, the global batch at each step.
inline Result reference(const Variant& v, int64_t steps) {
  seed_cpu(7);
  Stack net(StackOptions{.units = false});
  if (v.freeze_block) freeze(net);
  auto opt = make_optimizer(net, v.sgd);
  Result r;
  const int64_t rows = v.world * kRows * v.accumulation;
  for (int64_t s = 0; s < steps; ++s) {
    opt->zero_grad();
    F::cross_entropy(net(features().narrow(0, s * rows, rows)), labels().narrow(0, s * rows, rows)).backward();
    if (v.clip > 0) r.norms.push_back(torch::nn::utils::clip_grad_norm_(net->parameters(), v.clip));
    opt->step();
  }
  for (const auto& item : net->named_parameters()) r.params[item.key()] = item.value().detach().clone();
  return r;
}

inline AcceleratorOptions sharded(const Variant& v) {
  MixedPrecisionPolicy policy;
  if (v.reduce_bf16) policy.reduce_dtype(torch::kBFloat16);
  auto param = OffloadOptions().device(v.offload_param ? OffloadDevice::cpu : OffloadDevice::none);
  if (!v.param_nvme_path.empty())
    param = OffloadOptions().device(OffloadDevice::nvme).nvme_path(v.param_nvme_path).max_in_cpu(v.max_in_cpu);
  const bool host = v.offload_optimizer || param.device() != OffloadDevice::none;
  return AcceleratorOptions()
      .mixed_precision(v.bf16 ? std::optional<MixedPrecision>(MixedPrecision::bf16) : std::nullopt)
      .gradient_accumulation_steps(v.accumulation)
      .parallelism_config(v.mesh)
      .sharding(ShardingOptions()
                    .strategy(v.zero2                   ? ShardingStrategy::shard_grad_op
                              : v.hybrid_shard_size > 0 ? ShardingStrategy::hybrid_shard
                                                        : ShardingStrategy::full_shard)
                    .hybrid_shard_size(v.hybrid_shard_size)
                    .reshard_after_forward(v.reshard_slices > 0 ? ReshardAfterForward(v.reshard_slices)
                                                                : ReshardAfterForward(v.reshard_after_forward))
                    .auto_wrap_policy(v.policy)
                    .min_num_params(100)
                    .offload_optimizer(OffloadOptions()
                                           .device(!v.nvme_path.empty() ? OffloadDevice::nvme
                                                   : host               ? OffloadDevice::cpu
                                                                        : OffloadDevice::none)
                                           .nvme_path(v.nvme_path))
                    .offload_param(param)
                    .activation_checkpointing(v.checkpoint)
                    .backward_prefetch(v.backward_prefetch)
                    .forward_prefetch(v.forward_prefetch)
                    .max_live_parameters(v.max_live_parameters)
                    .state_dict_type(v.sharded_state ? StateDictType::sharded : StateDictType::full)
                    .mixed_precision_policy(policy));
}

// Training through the Accelerator, as a user writes it.
struct Trainer {
  Accelerator acc;
  Stack net{nullptr};
  std::optional<PreparedModel<Stack>> model;
  std::shared_ptr<AcceleratedOptimizer> optimizer;
  std::vector<double> norms;
  int64_t first = 0;
  Variant v;

  explicit Trainer(const Variant& variant) : Trainer(variant, sharded(variant)) {}
  // `options` in place of sharded(variant) (sharding from a config); the
  // variant still says how to train.
  Trainer(const Variant& variant, AcceleratorOptions options) : acc(std::move(options)), v(variant) {
    seed_cpu(7 + 100 * acc.process_index());  // prepare must broadcast rank 0's weights
    net = v.meta_init && acc.process_index() != 0 ? init_empty_weights([] { return Stack(); }) : Stack();
    if (v.freeze_block) freeze(net);
    auto [m, o] = acc.prepare(net, make_optimizer(net, v.sgd));
    model.emplace(std::move(m));
    optimizer = o;
  }
  fsdp::FullyShardedModel& sharding() { return dynamic_cast<fsdp::FullyShardedModel&>(*model->core().sharding()); }

  void train(int64_t steps) {
    const int64_t world = acc.num_processes();
    for (int64_t s = 0; s < steps; ++s) {
      for (int64_t m = 0; m < v.accumulation; ++m, first += world * kRows) {
        auto scope = acc.accumulate(*model);
        const int64_t mine = first + acc.process_index() * kRows;
        acc.backward(F::cross_entropy((*model)(features().narrow(0, mine, kRows)), labels().narrow(0, mine, kRows)));
        if (acc.sync_gradients() && v.clip > 0)
          norms.push_back(acc.clip_grad_norm_(net->parameters(), v.clip).item<double>());
        optimizer->step();
        optimizer->zero_grad();
      }
    }
  }

  std::map<std::string, torch::Tensor> params() {
    std::map<std::string, torch::Tensor> out;
    for (auto& [name, t] : acc.get_state_dict(*model)) out[name] = t;
    return out;
  }
};

// Trains `v` for 4 steps on its ranks: the same parameters (and clipped
// norms) as the one-process reference, every rank the same.
inline void expect_equals_reference(const Variant& v) {
  run_distributed(v.world, [&] {
    const int64_t steps = 4;
    const auto ref = reference(v, steps);
    Trainer t(v);
    t.train(steps);
    const auto mine = t.params();
    EXPECT_LT(max_diff(mine, ref.params), 1e-5);
    std::vector<torch::Tensor> all;
    for (const auto& [name, p] : mine) all.push_back(p);
    expect_ranks_agree(all);
    ASSERT_EQ(t.norms.size(), ref.norms.size());
    for (size_t i = 0; i < ref.norms.size(); ++i) EXPECT_NEAR(t.norms[i], ref.norms[i], 1e-5) << "step " << i;
    if (v.clip > 0) {
      EXPECT_GT(ref.norms[0], v.clip);  // clipping really happened
    }
    if (v.freeze_block) {  // the frozen norm did not move
      EXPECT_TRUE(torch::equal(mine.at("h.0.ln.weight"), torch::ones({8})));
    }
  });
}

}  // namespace accel::testing::fsdp_training
