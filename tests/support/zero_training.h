#pragma once
// The small training problem the ZeRO tests share (tests/dist/zero*_test.cpp):
// the classifier with two hidden layers on 512 samples (support/classifier.h),
// a two-group AdamW (or SGD with momentum), the single-process plain-LibTorch
// reference on full batches, and a Trainer that trains through the
// Accelerator as a user writes it, each rank on its rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <optional>

#include "accel/accelerator.h"
#include "accel/parallel/zero/zero_engine.h"
#include "support/classifier.h"
#include "support/distributed.h"
#include "support/tensors.h"

namespace accel::testing::zero_training {

namespace F = torch::nn::functional;

using Net = classifier::Net<{.fc2 = true}>;

constexpr int64_t kRows = 2;  // rows per rank per micro-batch
constexpr int64_t kSamples = 512;

enum class Opt { adamw, sgd };

inline std::shared_ptr<torch::optim::Optimizer> make_optimizer(Opt kind, Net& net) {
  if (kind == Opt::sgd)
    return std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  // Two param groups: the head without weight decay.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<torch::Tensor> body, head;
  for (auto& p : net->fc1->parameters()) body.push_back(p);
  for (auto& p : net->fc2->parameters()) body.push_back(p);
  for (auto& p : net->head->parameters()) head.push_back(p);
  groups.emplace_back(body,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).weight_decay(0.1)));
  groups.emplace_back(head,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.02).weight_decay(0)));
  return std::make_shared<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(0.01));
}

// One optimizer step of the global batch: `rows` samples starting at `first`.
struct Phase {
  int64_t steps;
  int64_t rows_per_step;
};

// The reference: one process, plain LibTorch, full batches; phases of
// different global batch sizes (for a resume on another number of ranks).
struct Reference {
  std::vector<torch::Tensor> params;
  std::vector<double> norms;
};
inline Reference reference(Opt kind, const std::vector<Phase>& phases, double clip) {
  seed_cpu(7);
  Net net;
  auto opt = make_optimizer(kind, net);
  auto x = classifier::features(kSamples), y = classifier::labels(kSamples);
  Reference r;
  int64_t first = 0;
  for (const auto& ph : phases)
    for (int64_t s = 0; s < ph.steps; ++s, first += ph.rows_per_step) {
      opt->zero_grad();
      F::cross_entropy(net(x.narrow(0, first, ph.rows_per_step)), y.narrow(0, first, ph.rows_per_step)).backward();
      if (clip > 0) r.norms.push_back(torch::nn::utils::clip_grad_norm_(net->parameters(), clip));
      opt->step();
    }
  r.params = snapshot(*net);
  return r;
}

inline AcceleratorOptions zero_options(ShardingStrategy strategy, int64_t accumulation = 1,
                                       int64_t bucket = 500'000'000, bool overlap = true) {
  return AcceleratorOptions()
      .gradient_accumulation_steps(accumulation)
      .sharding(ShardingOptions().strategy(strategy).reduce_bucket_size(bucket).overlap_comm(overlap));
}

// A training run through the Accelerator, the way a user writes it.
struct Trainer {
  Accelerator acc;
  Net net;
  std::optional<PreparedModel<Net>> model;
  std::shared_ptr<AcceleratedOptimizer> optimizer;
  std::vector<double> norms;
  std::vector<bool> skipped;
  int64_t first = 0;  // the next global row

  Trainer(AcceleratorOptions options, Opt kind) : acc(std::move(options)) {
    seed_cpu(7 + 100 * acc.process_index());  // prepare must broadcast rank 0's weights
    net = Net();
    auto [m, o] = acc.prepare(net, make_optimizer(kind, net));
    model.emplace(std::move(m));
    optimizer = o;
  }
  zero::ZeroEngine& engine() { return dynamic_cast<zero::ZeroEngine&>(*optimizer->tensors()); }

  // Also clear the module's own gradients after each step (a user's habit
  // that must not break ZeRO's gradient views).
  bool module_zero_grad = false;

  // `steps` optimizer steps; each rank takes its rows of each micro-batch.
  void train(int64_t steps, double clip, const std::function<torch::Tensor(int64_t step)>& extra_loss = {}) {
    static const auto x = classifier::features(kSamples), y = classifier::labels(kSamples);
    const int64_t world = acc.num_processes(), accumulation = acc.gradient_accumulation_steps();
    for (int64_t s = 0; s < steps; ++s) {
      for (int64_t m = 0; m < accumulation; ++m, first += world * kRows) {
        auto scope = acc.accumulate(*model);
        const int64_t mine = first + acc.process_index() * kRows;
        auto loss = F::cross_entropy((*model)(x.narrow(0, mine, kRows)), y.narrow(0, mine, kRows));
        if (extra_loss) loss = loss + extra_loss(s);
        acc.backward(loss);
        if (acc.sync_gradients() && clip > 0)
          norms.push_back(acc.clip_grad_norm_(net->parameters(), clip).item<double>());
        optimizer->step();
        optimizer->zero_grad();
        if (module_zero_grad && acc.sync_gradients()) net->zero_grad();
      }
      skipped.push_back(optimizer->step_was_skipped());
    }
  }
};

}  // namespace accel::testing::zero_training
