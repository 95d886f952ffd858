#pragma once
// PreparedModel<Holder>: what Accelerator::prepare returns for a model. It
// is called like the module and adds, around each forward, what the
// configuration asks for:
//   - DDP: buffers broadcast before forward, the reducer armed after it
//     (gradients all-reduced during backward; see parallel/ddp.h);
//   - parameter sharding: the root unit gathered before forward, backward
//     hooks after it (parallel/model_sharding.h);
//   - mixed precision: the forward runs under autocast, and fp16/bf16
//     outputs come back in fp32 (Accelerate's convert_outputs_to_fp32).
// The module itself (unwrap_model) is the user's, moved to the device.
// `model->` reaches it too (for its members); a backward after
// `model->forward(x)` would silently skip the above, so it throws instead
// (forward_check.h).
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/amp/autocast.h"
#include "accel/amp/convert_outputs.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/forward_check.h"
#include "accel/parallel/ddp.h"
#include "accel/parallel/model_sharding.h"
#include "accel/util/export.h"

namespace accel {

/// The type-independent part of a prepared model.
class ACCEL_API PreparedModelCore {
 public:
  PreparedModelCore(std::shared_ptr<torch::nn::Module> module, torch::Device device, MixedPrecision mixed_precision,
                    std::unique_ptr<DataParallelEngine> ddp, std::shared_ptr<ModelSharding> sharding = nullptr)
      : module_(std::move(module)),
        device_(device),
        mixed_precision_(mixed_precision),
        ddp_(std::move(ddp)),
        sharding_(std::move(sharding)) {
    std::string what;
    if (ddp_) what = "DDP's gradient all-reduce";
    if (sharding_) what = "parameter sharding's gathers and reductions";
    if (mixed_precision_ != MixedPrecision::no)
      what += (what.empty() ? "" : " and ") + to_string(mixed_precision_) + " autocast";
    if (!what.empty())
      check_ = std::make_unique<ForwardCheck>(*module_, what, /*per_backward=*/ddp_ != nullptr || sharding_ != nullptr);
  }

  void before_forward() {
    if (check_) check_->note_forward();
    if (ddp_) ddp_->before_forward();
    if (sharding_) sharding_->before_forward();
  }
  /// Whether after_forward needs the outputs (the unused-parameter search, backward hooks).
  bool wants_outputs() const { return (ddp_ && ddp_->options().find_unused_parameters()) || sharding_; }
  void after_forward(std::vector<torch::Tensor>& outputs) {
    if (ddp_) ddp_->after_forward(outputs);
    if (sharding_) sharding_->after_forward(outputs);
  }

  /// Backward inside the scope accumulates locally (no all-reduce).
  NoSyncGuard no_sync() { return NoSyncGuard(sync_flag()); }
  /// What no_sync() clears (null: nothing to skip, one process).
  bool* sync_flag() {
    if (sharding_) return sharding_->sync_flag();
    return ddp_ ? &ddp_->require_backward_grad_sync : nullptr;
  }

  /// The model's parameters and buffers by name (model_state), readable:
  /// gathered and copied to the CPU under parameter sharding (every
  /// process calls it then), else the module's own tensors.
  safetensors::NamedTensors state() const;
  /// Runs `write`, which writes the whole model's parameters in place (a
  /// load), so that under parameter sharding each rank keeps its shards of
  /// the written values. Every process calls it.
  void write_parameters(const std::function<void()>& write);

  torch::nn::Module& module() { return *module_; }
  const std::shared_ptr<torch::nn::Module>& module_ptr() const { return module_; }
  torch::Device device() const { return device_; }
  MixedPrecision mixed_precision() const { return mixed_precision_; }
  /// Null when the model is not replicated with DDP (one process).
  DataParallelEngine* ddp() { return ddp_.get(); }
  /// Null unless the parameters are sharded.
  ModelSharding* sharding() { return sharding_.get(); }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  torch::Device device_;
  MixedPrecision mixed_precision_;
  std::unique_ptr<DataParallelEngine> ddp_;
  std::shared_ptr<ModelSharding> sharding_;
  std::unique_ptr<ForwardCheck> check_;
};

template <class Holder>
class PreparedModel {
 public:
  PreparedModel(Holder module, std::shared_ptr<PreparedModelCore> core)
      : module_(std::move(module)), core_(std::move(core)) {}

  template <class... Args>
  auto forward(Args&&... args) {
    core_->before_forward();
    auto out = [&] {
      AutocastGuard autocast(core_->device(), core_->mixed_precision());
      return module_->forward(std::forward<Args>(args)...);
    }();
    std::vector<torch::Tensor> outs;
    if (core_->wants_outputs()) collect_tensors(out, outs);
    core_->after_forward(outs);
    if (core_->mixed_precision() == MixedPrecision::no) return out;
    return outputs_to_fp32(std::move(out));
  }
  template <class... Args>
  auto operator()(Args&&... args) {
    return forward(std::forward<Args>(args)...);
  }

  /// The user's module (Accelerate's unwrap_model).
  Holder& module() { return module_; }
  typename Holder::ContainedType* operator->() { return module_.get(); }
  NoSyncGuard no_sync() { return core_->no_sync(); }
  PreparedModelCore& core() { return *core_; }
  const std::shared_ptr<PreparedModelCore>& core_ptr() const { return core_; }

 private:
  Holder module_;
  std::shared_ptr<PreparedModelCore> core_;
};

}  // namespace accel
