// Parameter sharding on one GPU (label gpu): one process, so nothing is
// split, but each unit's parameters are still freed after it runs and
// gathered (copied from the shard) on the device before its forward and
// backward, through the CUDA caching allocator. Training equals the same
// model trained without sharding on the GPU; between steps the model's
// parameters hold no device memory.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "support/cuda.h"
#include "support/tensors.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing::unit_stack;
namespace F = torch::nn::functional;

namespace {

std::map<std::string, torch::Tensor> train(bool sharded, bool bf16) {
  AcceleratorOptions options;
  options.mixed_precision(bf16 ? "bf16" : "no");
  if (sharded) options.sharding(ShardingOptions().strategy(ShardingStrategy::full_shard));
  Accelerator acc(options);
  torch::manual_seed(0);
  Stack net(StackOptions{.in = 32, .width = 256, .classes = 10, .blocks = 4});
  auto adamw =
      std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  auto [model, optimizer] = acc.prepare(net, adamw);
  auto g = at::detail::createCPUGenerator(7);
  for (int s = 0; s < 5; ++s) {
    auto x = torch::randn({64, 32}, g).to(acc.device());
    auto y = torch::randint(0, 10, {64}, g).to(acc.device());
    acc.backward(F::cross_entropy(model(x), y));
    acc.clip_grad_norm_(net->parameters(), 1.0);
    optimizer->step();
    optimizer->zero_grad();
  }
  if (sharded) {
    for (const auto& p : net->parameters()) {
      EXPECT_TRUE(p.is_cuda());
      EXPECT_EQ(p.storage().nbytes(), 0u);
    }
    const auto& sharding = dynamic_cast<fsdp::FullyShardedModel&>(*model.core().sharding());
    const auto m = sharding.memory();
    EXPECT_EQ(m.unsharded, 0);
    EXPECT_LT(m.peak_unsharded, m.full);  // never every block gathered at once
  }
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : acc.get_state_dict(model)) out[name] = t.to(torch::kCPU, torch::kFloat);
  return out;
}

}  // namespace

TEST(FullShardGpu, EqualsUnshardedTraining) {
  REQUIRE_CUDA();
  for (bool bf16 : {false, true}) {
    const auto plain = train(false, bf16), sharded = train(true, bf16);
    ASSERT_EQ(plain.size(), sharded.size());
    for (const auto& [name, t] : plain)
      EXPECT_LT(accel::testing::max_diff(sharded.at(name), t), 1e-5) << name << (bf16 ? " (bf16 autocast)" : "");
  }
}
