// init_empty_weights / init_on_device: modules built with no memory, then
// given storage (big_model/empty_init.h).
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "accel/big_model/empty_init.h"
#include "support/errors.h"
#include "support/tensors.h"

namespace {

using accel::testing::expect_error;

// Resident memory of this process, in bytes.
int64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      int64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, key);
  }
  ADD_FAILURE() << "no VmRSS in /proc/self/status";
  return 0;
}

// Parameters (Linear, Embedding, LayerNorm) and buffers (BatchNorm's
// running statistics) of LibTorch's own modules.
struct NetImpl : torch::nn::Module {
  explicit NetImpl(int64_t width, int64_t layers = 2) {
    embed = register_module("embed", torch::nn::Embedding(100, width));
    for (int64_t i = 0; i < layers; ++i) blocks->push_back(torch::nn::Linear(width, width));
    register_module("blocks", blocks);
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    bn = register_module("bn", torch::nn::BatchNorm1d(width));
    scale = register_buffer("scale", torch::full({width}, 0.5));
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    auto x = embed(tokens);
    for (auto& block : *blocks) x = torch::relu(block->as<torch::nn::Linear>()->forward(x));
    return norm(x) * scale;
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::Tensor scale;
};
TORCH_MODULE(Net);

TEST(EmptyInit, EveryParameterAndBufferIsOnTheMetaDevice) {
  auto net = accel::init_empty_weights([] { return Net(16); });
  int tensors = 0;
  for (const auto& p : net->named_parameters()) {
    EXPECT_TRUE(p.value().is_meta()) << p.key();
    EXPECT_TRUE(p.value().requires_grad()) << p.key();
    ++tensors;
  }
  for (const auto& b : net->named_buffers()) {
    EXPECT_TRUE(b.value().is_meta()) << b.key();
    ++tensors;
  }
  EXPECT_EQ(tensors, 1 + 2 * 2 + 2 + 2 + 3 + 1);
  EXPECT_EQ(net->blocks[0]->as<torch::nn::Linear>()->weight.sizes(), (torch::IntArrayRef{16, 16}));
  EXPECT_EQ(net->embed->weight.sizes(), (torch::IntArrayRef{100, 16}));
  EXPECT_EQ(net->bn->num_batches_tracked.scalar_type(), torch::kLong);
  // The scope is over: factories are back on the CPU.
  EXPECT_TRUE(torch::empty({2}).is_cpu());
  EXPECT_FALSE(accel::init_device().has_value());
}

TEST(EmptyInit, ExplicitDevicesAndTensorsArguments) {
  accel::InitEmptyWeights scope;
  // An explicit device is kept; so is the device of the tensor an op follows.
  EXPECT_TRUE(torch::zeros({3}, torch::kCPU).is_cpu());
  EXPECT_TRUE(torch::tensor({1.0, 2.0}, torch::kCPU).is_cpu());
  const auto real = torch::ones({3}, torch::kCPU);
  EXPECT_TRUE(torch::empty_like(real).is_cpu());
  EXPECT_TRUE((real * 2).is_cpu());
  EXPECT_EQ((real * 2).sum().item<double>(), 6.0);
  // Factories without one go to the meta device, whatever they fill.
  for (const auto& t : {torch::empty({2}), torch::zeros({2}), torch::ones({2}), torch::full({2}, 3.0), torch::arange(5),
                        torch::rand({2}), torch::randn({2}), torch::eye(3), torch::linspace(0, 1, 4)})
    EXPECT_TRUE(t.is_meta()) << t.sizes();
}

TEST(EmptyInit, ScopesNestAndEnd) {
  {
    accel::InitOnDevice outer(torch::kMeta);
    {
      accel::InitOnDevice inner(torch::kCPU);
      EXPECT_TRUE(torch::empty({1}).is_cpu());
      EXPECT_EQ(accel::init_device(), c10::Device(torch::kCPU));
    }
    EXPECT_TRUE(torch::empty({1}).is_meta());
  }
  EXPECT_TRUE(torch::empty({1}).is_cpu());
  auto on_cpu = accel::init_on_device(torch::kCPU, [] { return torch::nn::Linear(3, 4); });
  EXPECT_TRUE(on_cpu->weight.is_cpu());
}

// A model of 6 GiB (fp32) built in this process: resident memory grows by
// almost nothing. The control, a 64 MiB model built without the scope,
// shows the measure sees allocations.
TEST(EmptyInit, ASixGigabyteModelTakesNoMemory) {
  const int64_t before = resident_bytes();
  torch::nn::Sequential big;
  {
    accel::InitEmptyWeights scope;
    for (int i = 0; i < 24; ++i) big->push_back(torch::nn::Linear(8192, 8192));
  }
  int64_t bytes = 0;
  for (const auto& p : big->parameters()) bytes += p.numel() * p.element_size();
  EXPECT_GT(bytes, int64_t{6} << 30);
  const int64_t grown = resident_bytes() - before;
  EXPECT_LT(grown, int64_t{32} << 20) << "resident memory grew by " << grown << " bytes";

  // Memory earlier tests freed may still be resident in malloc's heap and
  // would serve the control without growing the resident set: hand it back.
  ::malloc_trim(0);
  const int64_t before_control = resident_bytes();
  torch::nn::Linear control(4096, 4096);  // 64 MiB, initialised (pages touched)
  EXPECT_GT(resident_bytes() - before_control, int64_t{60} << 20);
}

// Materialised on the CPU and filled with a reference model's values, the
// model computes what the reference computes, forward and backward.
TEST(EmptyInit, MaterializedModelRunsLikeTheReference) {
  torch::manual_seed(0);
  Net reference(8);
  reference->eval();
  auto net = accel::init_empty_weights([] { return Net(8); });
  net->eval();
  // Handles taken before materialising see the new data: identity is kept.
  const auto weight_handle = net->blocks[1]->as<torch::nn::Linear>()->weight;
  accel::materialize(*net, torch::kCPU);
  {
    torch::NoGradGuard no_grad;
    auto ref = reference->named_parameters();
    for (auto& p : net->named_parameters()) p.value().copy_(ref[p.key()]);
    auto ref_buffers = reference->named_buffers();
    for (auto& b : net->named_buffers()) b.value().copy_(ref_buffers[b.key()]);
  }
  EXPECT_TRUE(weight_handle.is_cpu());
  EXPECT_TRUE(weight_handle.is_same(net->named_parameters()["blocks.1.weight"]));
  for (const auto& p : net->parameters()) EXPECT_TRUE(p.requires_grad());

  const auto tokens = torch::randint(0, 100, {4, 5});
  const auto out = net->forward(tokens);
  const auto expected = reference->forward(tokens);
  accel::testing::expect_equal(out, expected, "outputs");
  out.sum().backward();
  expected.sum().backward();
  accel::testing::expect_equal(net->embed->weight.grad(), reference->embed->weight.grad(), "embedding grad");
  accel::testing::expect_equal(weight_handle.grad(), reference->blocks[1]->as<torch::nn::Linear>()->weight.grad(),
                               "linear grad");
}

// One tensor registered under two names (a tied embedding and output).
struct TiedImpl : torch::nn::Module {
  TiedImpl() {
    first = register_module("first", torch::nn::Linear(4, 4));
    tied = register_parameter("tied", first->weight);
  }
  torch::nn::Linear first{nullptr};
  torch::Tensor tied;
};
TORCH_MODULE(Tied);

TEST(EmptyInit, TiedTensorsStayTied) {
  auto tied = accel::init_empty_weights([] { return Tied(); });
  accel::materialize(*tied, torch::kCPU);
  EXPECT_TRUE(tied->first->weight.is_cpu());
  EXPECT_TRUE(tied->first->weight.is_same(tied->tied));
  EXPECT_TRUE(tied->named_parameters()["tied"].is_same(tied->first->weight));
}

TEST(EmptyInit, ReplaceTensorDataRefusesWhatCannotFit) {
  const auto target = torch::zeros({2, 3}, torch::kMeta).requires_grad_();
  expect_error<std::invalid_argument>(
      [&] {
        accel::replace_tensor_data(target, torch::zeros({3, 2}));
      },
      {"shape [3, 2]", "[2, 3]"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::replace_tensor_data(target, torch::zeros({2, 3}, torch::kLong));
      },
      {"requires grad", "Long"});
  accel::replace_tensor_data(target, torch::ones({2, 3}));
  EXPECT_TRUE(target.is_cpu());
  EXPECT_EQ(target.sum().item<double>(), 6.0);
}

}  // namespace
