#pragma once
// The one-process reference the tests of a GPT-2 split over ranks (mesh,
// pipeline, context parallel, FSDP stages) compare against: the tiny
// model from a seed, AdamW, a few steps over fixed token rows, each step
// clipped by the global norm. Each test fixes its numbers in a Gpt2Run and
// feeds its own split run the same rows (token_rows) and optimizer (adamw);
// split_run_check.h compares the two Traces. Header-only: the GPT-2
// example's model is compiled into the test binaries, not the support library.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/optim/clip_grad.h"
#include "gpt2/model.h"
#include "support/tensors.h"

namespace accel::testing {

struct Gpt2Run {
  int steps = 3;
  int64_t rows_per_step = 4;
  int64_t seq = 32;
  uint64_t rows_seed = 900;  // the token rows
  uint64_t model_seed = 17;  // the model's initial weights
  double max_norm = 0.5;     // clipping acts at the first step
  double lr = 1e-3;
  // Adam divides by sqrt(v) + eps: tests comparing within 1e-5 raise it to
  // 1e-6, or a gradient element near 0 turns summation-order noise (1e-10)
  // into 1e-5 of update.
  double eps = 1e-8;
};

struct Gpt2Trace {
  std::vector<double> losses, norms;            // one per step
  std::map<std::string, torch::Tensor> params;  // name -> whole tensor after the steps
};

/// Every step's rows of seq + 1 tokens (inputs and the targets one to the
/// right), run.rows_per_step each, in the order a sequential loader gives them.
inline torch::Tensor token_rows(const Gpt2Run& run, int64_t vocab) {
  auto g = at::detail::createCPUGenerator(run.rows_seed);
  return torch::randint(0, vocab, {run.steps * run.rows_per_step, run.seq + 1}, g);
}

inline std::shared_ptr<torch::optim::AdamW> adamw(const Gpt2Run& run, const std::vector<torch::Tensor>& params) {
  return std::make_shared<torch::optim::AdamW>(params,
                                               torch::optim::AdamWOptions(run.lr).weight_decay(0.1).eps(run.eps));
}

/// Plain LibTorch, one process, each step's whole rows (under autocast on
/// the CPU for `mp`).
inline Gpt2Trace one_process(const Gpt2Run& run, MixedPrecision mp = MixedPrecision::no) {
  seed_cpu(run.model_seed);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  auto opt = adamw(run, model->parameters());
  const auto rows = token_rows(run, model->options().vocab_size());
  Gpt2Trace t;
  for (int step = 0; step < run.steps; ++step) {
    auto batch = rows.narrow(0, step * run.rows_per_step, run.rows_per_step);
    opt->zero_grad();
    torch::Tensor loss;
    {
      AutocastGuard autocast(torch::kCPU, mp);
      loss = model(batch.narrow(1, 0, run.seq).contiguous(), batch.narrow(1, 1, run.seq).contiguous());
    }
    loss.backward();
    t.norms.push_back(clip_grad_norm(model->parameters(), run.max_norm).item<double>());
    opt->step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) t.params[p.key()] = p.value().detach().clone();
  return t;
}

}  // namespace accel::testing
