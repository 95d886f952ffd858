#pragma once
// The model the parameter-sharding tests train: an input projection, a
// stack of residual MLP blocks each wrapped in an accel::Unit (class name
// "StackBlock"), and a head. Its forward runs the blocks through their
// units, as a model author writes it; `units = false` builds the same
// model without units (the reference, plain LibTorch).
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "accel/unit/unit.h"

namespace accel::testing::unit_stack {

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(int64_t width) {
    ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    fc1 = register_module("fc1", torch::nn::Linear(width, 2 * width));
    fc2 = register_module("fc2", torch::nn::Linear(2 * width, width));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    ++forwards;
    if (probe) probe();
    return x + fc2(torch::gelu(fc1(ln(x))));
  }

  int64_t forwards = 0;         // calls, recomputations included
  std::function<void()> probe;  // a test's look at the moment this block's forward starts
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Block);

struct StackOptions {
  int64_t in = 6;
  int64_t width = 8;
  int64_t classes = 3;
  int64_t blocks = 3;
  bool units = true;
};

class StackImpl : public torch::nn::Module {
 public:
  explicit StackImpl(StackOptions o = {}) {
    embed = register_module("embed", torch::nn::Linear(o.in, o.width));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.blocks; ++i) {
      Block block(o.width);
      h->push_back(block);
      if (o.units) units.emplace_back(block, "StackBlock");
      blocks.push_back(block);
    }
    head = register_module("head", torch::nn::Linear(o.width, o.classes));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = embed(x);
    for (size_t i = 0; i < blocks.size(); ++i) x = units.empty() ? blocks[i](x) : units[i](x);
    return head(x);
  }

  torch::nn::Linear embed{nullptr}, head{nullptr};
  torch::nn::ModuleList h{nullptr};
  std::vector<Block> blocks;
  std::vector<accel::Unit<Block>> units;
};
TORCH_MODULE(Stack);

}  // namespace accel::testing::unit_stack
