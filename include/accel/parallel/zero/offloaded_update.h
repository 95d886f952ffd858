#pragma once
// OffloadedUpdate: ZeRO-Offload's optimizer step, for a ZeroEngine whose
// optimizer is Adam or AdamW (or a subclass) and whose optimizer state is
// offloaded (ShardingOptions::offload_optimizer, cpu or nvme).
//
// Per param group, this rank's fp32 master slice stays in host memory and
// the Adam moments in host memory (cpu) or in swap files under
// nvme_path/rank<r>/group<g> (nvme); the update is accel's CPU Adam
// (optim/offloaded_adam.h), its hyper-parameters read from the user's
// optimizer's param group at every step, so a scheduler's lr applies. The
// user's optimizer object holds no state meanwhile; ZeroEngine moves it in
// and out for checkpoints (state / load_state below).
//
// The new values travel to the device in the model's dtype: the CPU update
// writes a bf16/fp16 copy in the same pass (into pinned memory), and each
// finished chunk is copied to a device staging slice on a side stream while
// the CPU steps the next chunk. The engine then copies (one process) or
// all-gathers the staging slices into the model.
//
// start(..., background = true) is ZeRO-Offload's one-step delayed
// parameter update: start returns at once and the update runs on a worker
// thread while the program goes on with the next forward and backward.
#include <c10/core/Stream.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "accel/optim/offloaded_adam.h"
#include "accel/parallel/sharding_options.h"
#include "accel/util/export.h"

namespace accel::zero {

class ACCEL_API OffloadedUpdate {
 public:
  /// Adam and AdamW (and their subclasses): the updates CPU Adam computes.
  static bool supports(const torch::optim::Optimizer& optimizer);

  /// `masters[g]`: group g's fp32 host slice (the optimizer's tensor).
  /// `model` describes the model's parameters: dtype and device.
  /// `destinations` (optional, one per group, the model's dtype and device,
  /// as long as the slice): where the new values go instead of staging
  /// slices of their own, when the model may be written during the update
  /// (not delayed) and needs no all-gather; saves 2 bytes per parameter of
  /// device memory under bf16. Throws
  /// std::invalid_argument for an optimizer supports() refuses (naming it)
  /// or bad offload options, std::runtime_error naming a folder that cannot
  /// hold the swap files.
  OffloadedUpdate(const torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> masters,
                  const OffloadOptions& options, int rank, torch::TensorOptions model,
                  std::vector<torch::Tensor> destinations = {});
  ~OffloadedUpdate();  // waits for a running update

  /// Steps every group from `grads` (fp32 host slices).
  /// In the background, `grads` must stay untouched until wait().
  void start(const torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> grads, bool background);
  /// Waits for the update started last; rethrows its error. Nothing to wait for: returns.
  void wait();
  bool running() const { return worker_.joinable(); }

  /// Group g's new values, as the model holds them (dtype and device), after wait().
  const torch::Tensor& model_values(size_t g) const { return model_values_.at(g); }

  /// Adam's state of group g ("exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"])
  /// and its step count; load_state replaces them.
  std::map<std::string, torch::Tensor> state(size_t g) const { return adams_.at(g)->state(); }
  int64_t step_count(size_t g) const { return adams_.at(g)->step_count(); }
  void load_state(size_t g, const std::map<std::string, torch::Tensor>& state, int64_t step_count);

  /// Bytes of optimizer state in host memory (cpu: all of it; nvme: buffers).
  int64_t host_state_bytes() const;
  /// Milliseconds the last update took from start to end (CPU and copies).
  double last_update_ms() const { return last_update_ms_; }

 private:
  void run(const std::vector<CpuAdamOptions>& hyper, const std::vector<torch::Tensor>& grads);

  std::vector<torch::Tensor> masters_;
  std::vector<std::unique_ptr<OffloadedAdam>> adams_;
  std::vector<torch::Tensor> host_copies_;   // model dtype, pinned; undefined when the model is fp32
  std::vector<torch::Tensor> model_values_;  // staging slices on the device, or host tensors
  bool adamw_ = true;
  torch::Device device_;
  std::optional<c10::Stream> side_stream_;  // CUDA: the host-to-device copies run here
  std::thread worker_;
  std::exception_ptr error_;
  std::atomic<double> last_update_ms_{0};  // written by the worker
};

}  // namespace accel::zero
