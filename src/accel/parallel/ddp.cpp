#include "accel/parallel/ddp.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include "accel/util/check.h"

namespace accel {
namespace {

// PyTorch DDP's first bucket is small so that communication starts early.
constexpr int64_t kFirstBucketBytes = 1024 * 1024;

void broadcast_coalesced(std::vector<torch::Tensor> tensors, const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
  // One flat buffer per (device, dtype): one collective instead of one per tensor.
  std::map<std::pair<std::string, c10::ScalarType>, std::vector<torch::Tensor>> by_kind;
  for (auto& t : tensors) by_kind[{t.device().str(), t.scalar_type()}].push_back(t);
  for (auto& [kind, ts] : by_kind) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : ts) flat_parts.push_back(t.detach().reshape(-1));
    auto flat = torch::cat(flat_parts);
    std::vector<torch::Tensor> io{flat};
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    group->broadcast(io, opts)->wait();
    int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (auto& t : ts) {
      t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
}

}  // namespace

void broadcast_module_states(torch::nn::Module& module, const c10::intrusive_ptr<c10d::ProcessGroup>& group,
                             bool include_buffers) {
  if (!group || group->getSize() == 1) return;
  std::vector<torch::Tensor> states;
  for (auto& p : module.parameters()) states.push_back(p);
  if (include_buffers)
    for (auto& b : module.buffers()) states.push_back(b);
  if (!states.empty()) broadcast_coalesced(states, group);
}

DataParallelEngine::DataParallelEngine(std::shared_ptr<torch::nn::Module> module,
                                       c10::intrusive_ptr<c10d::ProcessGroup> group, DDPOptions options)
    : module_(std::move(module)), group_(std::move(group)), options_(options) {
  ACCEL_CHECK_ARG(group_, "DistributedDataParallel needs a process group (got none: is this a single process?)");
  ACCEL_CHECK_ARG(options_.bucket_cap_mb() > 0, "DDPOptions::bucket_cap_mb must be > 0, got ",
                  std::to_string(options_.bucket_cap_mb()));
  std::unordered_map<size_t, std::string> names;
  for (auto& item : module_->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    names[params_.size()] = item.key();
    params_.push_back(item.value());
  }
  ACCEL_CHECK_ARG(!params_.empty(), "DistributedDataParallel: the module has no parameter that requires grad");

  broadcast_module_states(*module_, group_, /*include_buffers=*/true);

  const auto cap = static_cast<int64_t>(options_.bucket_cap_mb() * 1024 * 1024);
  std::vector<bool> sparse(params_.size(), false);
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params_, {static_cast<size_t>(std::min(kFirstBucketBytes, cap)), static_cast<size_t>(cap)}, sparse);
  // Buckets come back in parameter order; backward produces gradients in
  // roughly reverse order, so the reducer gets them reversed (as PyTorch does).
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(limits.begin(), limits.end());
  std::vector<int64_t> limits64(limits.begin(), limits.end());
  reducer_ =
      std::make_shared<c10d::Reducer>(params_, buckets, group_, sparse, cap, options_.find_unused_parameters(),
                                      options_.gradient_as_bucket_view(), names, std::min(kFirstBucketBytes, cap),
                                      /*skip_all_reduce_unused_params=*/false,
                                      /*use_python_reducer=*/false, limits64);
  // The reducer reports to a c10d::Logger and assumes one exists (the
  // unused-parameter search dereferences it).
  logger_ = std::make_shared<c10d::Logger>(reducer_);
  reducer_->set_logger(logger_);
}

DataParallelEngine::~DataParallelEngine() = default;

void DataParallelEngine::before_forward() {
  if (!torch::GradMode::is_enabled()) return;
  if (options_.broadcast_buffers()) {
    std::vector<torch::Tensor> buffers;
    for (auto& b : module_->buffers()) buffers.push_back(b);
    if (!buffers.empty()) broadcast_coalesced(buffers, group_);
  }
  if (require_backward_grad_sync) reducer_->prepare_for_forward();
}

void DataParallelEngine::after_forward(const std::vector<torch::Tensor>& outputs) {
  if (!torch::GradMode::is_enabled() || !require_backward_grad_sync) return;
  // Arms the autograd hooks for the coming backward; with
  // find_unused_parameters the outputs seed the search for idle parameters.
  reducer_->prepare_for_backward(options_.find_unused_parameters() ? outputs : std::vector<torch::Tensor>{});
}

}  // namespace accel
