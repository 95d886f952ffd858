#pragma once
// The names the docs' code blocks take as given, so that each block compiles
// as written (tests/docs/extract_snippets.sh). A block may redeclare any of
// them: it runs in a scope of its own.
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "accel/accel.h"

namespace accel::docs {

/// What register_for_checkpointing takes: named tensors out and in.
struct MyProgress {
  torch::Tensor step = torch::zeros({}, torch::kLong);
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const { return {{"step", step}}; }
  void load_state_dict(const safetensors::OrderedTensors& state) { step = state["step"]; }
};

struct SnippetContext {
  torch::nn::Linear net{4, 2};
  torch::nn::Linear model{4, 2};
  torch::Tensor w = torch::ones({2}), b = torch::zeros({2});
  DataLoader<TensorDict> train_loader = make_data_loader(
      std::make_shared<TensorDataset>(TensorDict{{"x", torch::randn({8, 4})}, {"y", torch::randint(0, 2, {8})}}),
      DataLoaderOptions(4));
  DataLoader<TensorDict> eval_loader = train_loader;
  std::shared_ptr<torch::optim::AdamW> opt = std::make_shared<torch::optim::AdamW>(net->parameters(), 1e-3);
  std::shared_ptr<LRScheduler> sched = get_scheduler("linear", *opt, 10, 100);
  bool resuming = false;
  int64_t step = 0;
  static torch::Tensor loss_fn(const torch::Tensor& logits, const torch::Tensor& target) {
    return torch::nn::functional::cross_entropy(logits, target);
  }
};

}  // namespace accel::docs

// Local names for the context's members, each usable or not by a block.
#define ACCEL_DOCS_SNIPPET_NAMES(ctx)                                    \
  [[maybe_unused]] auto& net = (ctx).net;                                \
  [[maybe_unused]] auto& model = (ctx).model;                            \
  [[maybe_unused]] auto& w = (ctx).w;                                    \
  [[maybe_unused]] auto& b = (ctx).b;                                    \
  [[maybe_unused]] auto& train_loader = (ctx).train_loader;              \
  [[maybe_unused]] auto& eval_loader = (ctx).eval_loader;                \
  [[maybe_unused]] auto& opt = (ctx).opt;                                \
  [[maybe_unused]] auto& sched = (ctx).sched;                            \
  [[maybe_unused]] auto& resuming = (ctx).resuming;                      \
  [[maybe_unused]] auto& step = (ctx).step;                              \
  [[maybe_unused]] auto loss_fn = &accel::docs::SnippetContext::loss_fn; \
  using accel::docs::MyProgress;
