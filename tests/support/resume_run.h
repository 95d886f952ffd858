#pragma once
// Pieces shared by the tests that save a split GPT-2 run midway and resume
// it in fresh processes (tensor_parallel_checkpoint, mesh_sharded_checkpoint,
// pipeline_accelerator_checkpoint): the token rows every rank draws its
// batches from, and the optimizer whose state the checkpoints carry.
#include <memory>
#include <vector>

#include <torch/optim/adamw.h>
#include <torch/torch.h>

namespace accel::testing {

/// `steps` x `rows_per_step` rows of seq + 1 tokens in [0, vocab), the same
/// on every rank and in every process (fixed seed): step s's rows are rows
/// s * rows_per_step onward, split over the data-parallel ranks by the test.
inline torch::Tensor resume_rows(int64_t steps, int64_t rows_per_step, int64_t seq, int64_t vocab, uint64_t seed = 42) {
  auto g = at::detail::createCPUGenerator(seed);
  return torch::randint(0, vocab, {steps * rows_per_step, seq + 1}, g);
}

/// AdamW (lr 1e-2, weight decay 0.1) with eps 1e-6: the attention's key bias
/// has no true gradient (softmax ignores a shift shared by all keys), only
/// rounding noise of ~1e-9 that differs between layouts; with the default
/// eps (1e-8) Adam would scale that noise up to steps of ~1e-5, and the
/// tests would compare the layouts' rounding, not the checkpoint.
inline std::shared_ptr<torch::optim::AdamW> resume_adamw(const std::vector<torch::Tensor>& params) {
  return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1).eps(1e-6));
}

}  // namespace accel::testing
