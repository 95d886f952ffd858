// Activation checkpointing at units (unit/checkpoint.h) without sharding:
// a checkpointed block keeps no activations, runs its forward a second time
// in backward, and gives the same gradients as the plain block (dropout
// included: the random state is replayed); forwards it cannot recompute
// are refused by name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "accel/unit/checkpoint.h"
#include "accel/unit/unit.h"
#include "support/errors.h"

using namespace accel;

namespace {

// A residual block with dropout that counts its forwards.
struct DropBlockImpl : torch::nn::Module {
  DropBlockImpl() {
    fc = register_module("fc", torch::nn::Linear(8, 8));
    drop = register_module("drop", torch::nn::Dropout(0.5));
  }
  torch::Tensor forward(torch::Tensor x, double scale) {
    ++forwards;
    return x + scale * drop(torch::tanh(fc(x)));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::Dropout drop{nullptr};
  int forwards = 0;
};
TORCH_MODULE(DropBlock);

struct Net {
  explicit Net(bool checkpoint) {
    torch::manual_seed(3);
    for (int i = 0; i < 3; ++i) {
      blocks.emplace_back(DropBlock(), "DropBlock");
      blocks.back().slot()->set_checkpoint(checkpoint);
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& b : blocks) x = b(x, 0.5);
    return x.square().mean();
  }
  std::vector<torch::Tensor> grads() {
    std::vector<torch::Tensor> g;
    for (auto& b : blocks)
      for (auto& p : b.module()->parameters()) g.push_back(p.grad().clone());
    return g;
  }
  std::vector<Unit<DropBlock>> blocks;
};

struct PairBlockImpl : torch::nn::Module {
  torch::Tensor forward(std::vector<torch::Tensor> xs) { return xs[0] + xs[1]; }
};
TORCH_MODULE(PairBlock);

struct TwoOutputsImpl : torch::nn::Module {
  std::tuple<torch::Tensor, torch::Tensor> forward(torch::Tensor x) { return {x * 2, x * 3}; }
};
TORCH_MODULE(TwoOutputs);

}  // namespace

TEST(ActivationCheckpointing, SameGradientsWithDropoutAndOneMoreForward) {
  Net plain(false), ckpt(true);
  auto x = torch::randn({4, 8}, torch::requires_grad());
  torch::manual_seed(11);  // the same dropout masks in both forwards
  plain.forward(x).backward();
  const auto input_grad = x.grad().clone();
  x.mutable_grad().reset();
  torch::manual_seed(11);
  auto loss = ckpt.forward(x);
  // Nothing recorded inside the blocks: the loss's graph reaches each block
  // through one node, and the forwards ran once so far.
  for (auto& b : ckpt.blocks) EXPECT_EQ(b.module()->forwards, 1);
  loss.backward();
  for (auto& b : ckpt.blocks) EXPECT_EQ(b.module()->forwards, 2);  // recomputed once in backward
  const auto want = plain.grads(), got = ckpt.grads();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-6, 1e-7)) << i;
  EXPECT_TRUE(torch::allclose(x.grad(), input_grad, 1e-6, 1e-7));
  // The dropout masks really differ between draws (the replay matters).
  torch::manual_seed(12);
  Net other(false);
  other.forward(x).backward();
  EXPECT_FALSE(torch::allclose(other.grads()[0], want[0]));
}

TEST(ActivationCheckpointing, WithoutGradModeItIsThePlainForward) {
  Net ckpt(true);
  torch::NoGradGuard no_grad;
  auto loss = ckpt.forward(torch::randn({4, 8}));
  EXPECT_FALSE(loss.requires_grad());
  for (auto& b : ckpt.blocks) EXPECT_EQ(b.module()->forwards, 1);
}

TEST(ActivationCheckpointing, FrozenInputAndIdentityOutputKeepTheirHistory) {
  // The input needs no gradient: the parameters still get theirs.
  Net ckpt(true);
  ckpt.forward(torch::randn({4, 8})).backward();
  for (const auto& g : ckpt.grads()) EXPECT_GT(g.abs().sum().item<double>(), 0);
  // A run returning its input unchanged: the input keeps its own history.
  auto x = torch::randn({3}, torch::requires_grad());
  auto y = x * 2;
  const auto history = y.grad_fn();
  auto out = checkpointed({y}, [](const std::vector<torch::Tensor>& in) { return in[0]; });
  EXPECT_EQ(y.grad_fn(), history);
  out.sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), torch::full({3}, 2.0)));
}

TEST(ActivationCheckpointing, ForwardsItCannotRecomputeAreRefused) {
  Unit<PairBlock> pair(PairBlock(), "PairBlock");
  pair.slot()->set_checkpoint(true);
  auto a = torch::randn({2}, torch::requires_grad());
  accel::testing::expect_error<std::logic_error>(
      [&] {
        pair(std::vector<torch::Tensor>{a, a});
      },
      {"'PairBlock'", "inside other arguments"});
  Unit<TwoOutputs> two(TwoOutputs(), "TwoOutputs");
  two.slot()->set_checkpoint(true);
  accel::testing::expect_error<std::logic_error>([&] { two(a); }, {"'TwoOutputs'", "one tensor"});
}
