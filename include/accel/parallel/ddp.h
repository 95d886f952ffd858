#pragma once
// DistributedDataParallel for LibTorch modules, on PyTorch's own engine:
// c10d::Reducer. Gradients are all-reduced in buckets (bucket_cap_mb)
// launched from autograd hooks while backward still runs, then averaged.
// Parameters fill buckets in reverse registration order, as in PyTorch's
// DDP, because backward produces their gradients roughly in that order.
//
//   auto ddp = accel::DistributedDataParallel<Net>(net);   // Net: a ModuleHolder
//   auto loss = loss_fn(ddp(x), y);    // forward: runs the module, arms the reducer
//   loss.backward();                   // all-reduce overlaps backward
//   { auto guard = ddp.no_sync(); ... } // accumulate locally, no communication
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "accel/parallel/ddp_options.h"
#include "accel/util/collect_tensors.h"
#include "accel/util/export.h"

namespace c10d {
class Reducer;
class Logger;
}  // namespace c10d

namespace accel {

/// Rank 0's parameters and buffers copied to every rank, coalesced per dtype.
ACCEL_API void broadcast_module_states(torch::nn::Module& module, const c10::intrusive_ptr<c10d::ProcessGroup>& group,
                                       bool include_buffers = true);

/// The type-independent engine behind DistributedDataParallel<M>.
class ACCEL_API DataParallelEngine {
 public:
  DataParallelEngine(std::shared_ptr<torch::nn::Module> module, c10::intrusive_ptr<c10d::ProcessGroup> group,
                     DDPOptions options);
  ~DataParallelEngine();

  /// Before the module's forward: buffers broadcast, reducer armed.
  void before_forward();
  /// After forward: with find_unused_parameters, `outputs` seed the search.
  void after_forward(const std::vector<torch::Tensor>& outputs);

  /// While false (inside no_sync), backward accumulates locally.
  bool require_backward_grad_sync = true;

  const DDPOptions& options() const { return options_; }
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const { return group_; }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  DDPOptions options_;
  std::vector<torch::Tensor> params_;
  std::shared_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<c10d::Logger> logger_;
};

/// Scope in which backward does not all-reduce (gradient accumulation);
/// [[nodiscard]]: a guard dropped at once would guard nothing.
class ACCEL_API [[nodiscard]] NoSyncGuard {
 public:
  /// Clears `*sync_flag` (a mode's "reduce gradients in this backward",
  /// such as DataParallelEngine::require_backward_grad_sync) for the
  /// scope; null: a mode with nothing to skip.
  explicit NoSyncGuard(bool* sync_flag) : flag_(sync_flag), previous_(sync_flag ? *sync_flag : true) {
    if (flag_) *flag_ = false;
  }
  explicit NoSyncGuard(DataParallelEngine* engine)
      : NoSyncGuard(engine ? &engine->require_backward_grad_sync : nullptr) {}
  ~NoSyncGuard() {
    if (flag_) *flag_ = previous_;
  }
  NoSyncGuard(const NoSyncGuard&) = delete;
  NoSyncGuard& operator=(const NoSyncGuard&) = delete;

 private:
  bool* flag_;
  bool previous_;
};

/// DDP around a LibTorch ModuleHolder (e.g. torch::nn::Linear or a
/// TORCH_MODULE). Construction broadcasts rank 0's parameters and buffers.
template <class Holder>
class DistributedDataParallel {
 public:
  DistributedDataParallel(Holder module, c10::intrusive_ptr<c10d::ProcessGroup> group, DDPOptions options = {})
      : module_(std::move(module)),
        engine_(std::make_shared<DataParallelEngine>(module_.ptr(), std::move(group), options)) {}

  template <class... Args>
  auto forward(Args&&... args) {
    engine_->before_forward();
    auto out = module_->forward(std::forward<Args>(args)...);
    std::vector<torch::Tensor> outs;
    if (engine_->options().find_unused_parameters()) collect_tensors(out, outs);
    engine_->after_forward(outs);
    return out;
  }
  template <class... Args>
  auto operator()(Args&&... args) {
    return forward(std::forward<Args>(args)...);
  }

  NoSyncGuard no_sync() { return NoSyncGuard(engine_.get()); }

  Holder& module() { return module_; }
  typename Holder::ContainedType* operator->() { return module_.get(); }
  DataParallelEngine& engine() { return *engine_; }

 private:
  Holder module_;
  std::shared_ptr<DataParallelEngine> engine_;
};

}  // namespace accel
