// Parameter sharding (ShardingStrategy::full_shard, hybrid_shard) on 2, 3
// and 4 CPU ranks over Gloo, on a stack of units (support/unit_stack.h).
// Each variant trains to the same parameters as one process of plain
// LibTorch on the full batch (which DDP equals): with accumulation and
// clipping, without resharding after forward, with a frozen block, with
// every parameter in the root unit, hybrid on 4 ranks as 2 x 2. Then the
// memory each rank holds (1/N of the parameters and gradients, at most the
// root and two units gathered), save_state and load_state resuming
// exactly, and the refusals.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <optional>

#include "accel/accelerator.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/tensors.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t kRows = 2;  // rows per rank per micro-batch
constexpr int64_t kSamples = 256;

struct Variant {
  int world = 2;
  int64_t accumulation = 1;
  double clip = 0;
  bool reshard_after_forward = true;
  bool freeze_block = false;
  WrapPolicy policy = WrapPolicy::transformer_based;
  int hybrid_shard_size = 0;       // > 0: hybrid_shard in groups of that many ranks
  bool offload_optimizer = false;  // shards and optimizer state in host memory
  bool offload_param = false;      // and the gathers' copies too
  bool sgd = false;                // SGD with momentum instead of AdamW (stepped by its own step())
  bool checkpoint = false;         // activation checkpointing at the blocks
};

const torch::Tensor& features() {
  static const torch::Tensor x = [] {
    return torch::randn({kSamples, 6}, at::make_generator<at::CPUGeneratorImpl>(11));
  }();
  return x;
}
const torch::Tensor& labels() {
  static const torch::Tensor y = [] {
    return torch::randint(0, 3, {kSamples}, at::make_generator<at::CPUGeneratorImpl>(12));
  }();
  return y;
}

// Block 0's norm frozen, as a user freezes part of a model.
void freeze(Stack& net) {
  for (auto& p : net->blocks[0]->ln->parameters()) p.set_requires_grad(false);
}

// AdamW (or SGD) in two groups, by name: no weight decay for biases and norms.
std::shared_ptr<torch::optim::Optimizer> make_optimizer(Stack& net, bool sgd = false) {
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

double max_diff(const std::map<std::string, torch::Tensor>& got, const std::map<std::string, torch::Tensor>& want) {
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
Result reference(const Variant& v, int64_t steps) {
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

AcceleratorOptions sharded(const Variant& v) {
  return AcceleratorOptions()
      .gradient_accumulation_steps(v.accumulation)
      .sharding(ShardingOptions()
                    .strategy(v.hybrid_shard_size > 0 ? ShardingStrategy::hybrid_shard : ShardingStrategy::full_shard)
                    .hybrid_shard_size(v.hybrid_shard_size)
                    .reshard_after_forward(v.reshard_after_forward)
                    .auto_wrap_policy(v.policy)
                    .min_num_params(100)
                    .offload_optimizer(OffloadOptions().device(
                        v.offload_optimizer || v.offload_param ? OffloadDevice::cpu : OffloadDevice::none))
                    .offload_param(OffloadOptions().device(v.offload_param ? OffloadDevice::cpu : OffloadDevice::none))
                    .activation_checkpointing(v.checkpoint));
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

  explicit Trainer(const Variant& variant) : acc(sharded(variant)), v(variant) {
    seed_cpu(7 + 100 * acc.process_index());  // prepare must broadcast rank 0's weights
    net = Stack();
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

void expect_equals_reference(const Variant& v) {
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

}  // namespace

TEST(FullShard, AdamWEqualsOneProcess) { expect_equals_reference({}); }

TEST(FullShard, AccumulationAndClippingOnThreeRanksEqualOneProcess) {
  expect_equals_reference({.world = 3, .accumulation = 2, .clip = 0.05});
}

TEST(FullShard, WithoutReshardAfterForwardEqualsOneProcess) {
  expect_equals_reference({.accumulation = 2, .reshard_after_forward = false});
}

TEST(FullShard, FrozenBlockNormEqualsOneProcess) { expect_equals_reference({.world = 3, .freeze_block = true}); }

TEST(FullShard, EverythingInTheRootUnitEqualsOneProcess) {
  expect_equals_reference({.clip = 0.05, .policy = WrapPolicy::no_wrap});
  expect_equals_reference({.policy = WrapPolicy::size_based});
}

// Four ranks as two nodes of two: shard within each pair, replicate across.
TEST(HybridShard, TwoGroupsOfTwoEqualOneProcess) {
  expect_equals_reference({.world = 4, .clip = 0.05, .hybrid_shard_size = 2});
  // HYBRID_SHARD_ZERO2: the parameters kept from forward to backward.
  expect_equals_reference({.world = 4, .accumulation = 2, .reshard_after_forward = false, .hybrid_shard_size = 2});
}

// Offload: the shards, their gradients and the optimizer state in host
// memory (on these CPU ranks, separate buffers from those the gathers fill).
TEST(FullShard, OffloadedShardsEqualOneProcess) {
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .offload_param = true});
  expect_equals_reference({.world = 3, .freeze_block = true, .offload_optimizer = true});
  expect_equals_reference({.clip = 0.05, .offload_param = true, .sgd = true});  // stepped by SGD's own step()
  expect_equals_reference({.world = 4, .clip = 0.05, .hybrid_shard_size = 2, .offload_param = true});
}

// Each block recomputed in backward, inside the gather its backward needs.
TEST(FullShard, ActivationCheckpointingEqualsOneProcess) {
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .checkpoint = true});
  expect_equals_reference({.world = 3, .freeze_block = true, .offload_param = true, .checkpoint = true});
  expect_equals_reference({.world = 4, .reshard_after_forward = false, .hybrid_shard_size = 2, .checkpoint = true});
}

TEST(FullShard, CheckpointedBlocksGatherOncePerForwardAndBackward) {
  run_distributed(2, [&] {
    Trainer t({.checkpoint = true});
    t.train(3);
    const auto& units = t.sharding().units();
    for (size_t k = 0; k + 1 < units.size(); ++k) EXPECT_EQ(units[k]->gathers(), 3 * 2) << units[k]->path();
    EXPECT_EQ(units.back()->gathers(), 3);  // the root: once per step
  });
}

TEST(FullShard, OffloadedShardsLiveInHostMemory) {
  for (bool params : {true, false}) {
    run_distributed(2, [&] {
      Trainer t({.offload_optimizer = true, .offload_param = params});
      t.train(1);
      const auto m = t.sharding().memory();
      EXPECT_EQ(m.host, m.full);  // shards and gradient shards: 1/2 each of the padded total
      // Only the copy the gathers read, 1/2 of the parameters, stays on the device without offload_param.
      EXPECT_EQ(m.shards, params ? 0 : m.full / 2);
      EXPECT_EQ(m.unsharded, 0);
    });
  }
}

TEST(HybridShard, EachRankHoldsHalfAndGroupsThatDoNotDivideTheWorldAreRefused) {
  run_distributed(4, [&] {
    Trainer t({.world = 4, .hybrid_shard_size = 2});
    const auto m = t.sharding().memory();
    EXPECT_EQ(m.shards * 2, 2 * m.full);  // split in two, not four
    EXPECT_EQ(t.sharding().process_group()->getSize(), 2);
  });
  run_distributed(4, [&] {
    expect_error<std::invalid_argument>([&] { Trainer t({.world = 4, .hybrid_shard_size = 3}); },
                                        {"shard groups of 3 ranks", "hybrid_shard_size", "4 ranks"});
  });
}

TEST(FullShard, EachRankHoldsItsShareAndFewUnitsGatheredAtOnce) {
  for (bool reshard : {true, false}) {
    run_distributed(2, [&] {
      Trainer t({.reshard_after_forward = reshard});
      const auto& units = t.sharding().units();
      ASSERT_EQ(units.size(), 4u);  // three blocks and the root
      auto before = t.sharding().memory();
      EXPECT_EQ(before.unsharded, 0);
      // Parameters and gradients: each rank keeps exactly 1/2 of the padded total.
      EXPECT_EQ(before.shards * 2, 2 * before.full);
      t.train(2);
      const auto m = t.sharding().memory();
      EXPECT_EQ(m.unsharded, 0);  // nothing left gathered after the steps
      int64_t root = units.back()->unsharded_bytes(), largest = 0;
      for (size_t k = 0; k + 1 < units.size(); ++k) largest = std::max(largest, units[k]->unsharded_bytes());
      if (reshard) {
        EXPECT_LE(m.peak_unsharded, root + 2 * largest);
        EXPECT_LT(m.peak_unsharded, m.full);
      } else {
        EXPECT_EQ(m.peak_unsharded, m.full);  // every block kept from its forward to its backward
      }
      // The model's parameters hold no memory between steps, yet keep their shapes.
      for (const auto& p : t.net->parameters()) EXPECT_EQ(p.storage().nbytes(), 0u);
      EXPECT_EQ(t.net->blocks[0]->fc1->weight.sizes().vec(), (std::vector<int64_t>{16, 8}));
    });
  }
}

TEST(FullShard, SaveAndLoadStateResumesExactly) {
  TempDir dir;
  run_distributed(2, [&] {
    const Variant v{.accumulation = 2};
    Trainer straight(v);
    straight.train(2);
    straight.acc.save_state(dir.path() / "ckpt");
    straight.train(2);
    const auto want = straight.params();

    Trainer resumed(v);
    resumed.acc.load_state(dir.path() / "ckpt");
    resumed.first = straight.first / 2;  // the same rows as the second half
    resumed.train(2);
    EXPECT_EQ(max_diff(resumed.params(), want), 0.0);
  });
  // The model file holds the whole model, by its names.
  auto saved = safetensors::load_file(dir.path() / "ckpt" / "model.safetensors");
  EXPECT_NE(saved.find("h.1.fc2.weight"), nullptr);
  EXPECT_EQ(saved.find("h.1.fc2.weight")->sizes().vec(), (std::vector<int64_t>{8, 16}));
}

TEST(FullShard, ModelFilesHoldTheWholeModel) {
  TempDir dir;
  run_distributed(2, [&] {
    Trainer t({});
    t.train(1);
    const auto want = t.params();
    t.acc.save_model(*t.model, dir.path() / "model");
    std::map<std::string, torch::Tensor> got;
    for (auto& [name, tensor] :
         safetensors::to_named(safetensors::load_file(dir.path() / "model" / "model.safetensors")))
      got[name] = tensor;
    EXPECT_EQ(max_diff(got, want), 0.0);
  });
}

TEST(FullShard, Refusals) {
  run_distributed(2, [&] {
    // A class name the model has no unit of.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(AcceleratorOptions().sharding(
              ShardingOptions().strategy(ShardingStrategy::full_shard).transformer_cls_to_wrap({"GPT2Block"})));
          Stack net;
          acc.prepare(net);
        },
        {"'GPT2Block'", "StackBlock"});
    // An optimizer over parameters of no prepared model.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(AcceleratorOptions().sharding(ShardingOptions().strategy(ShardingStrategy::full_shard)));
          Stack net, other;
          auto model = acc.prepare(net);
          acc.prepare(make_optimizer(other));
        },
        {"in no prepared model"});
  });
}
