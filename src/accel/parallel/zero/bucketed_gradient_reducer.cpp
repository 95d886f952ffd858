#include "accel/parallel/zero/bucketed_gradient_reducer.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <stdexcept>

#include "accel/util/check.h"

namespace accel::zero {

namespace {

struct Hook : torch::autograd::PostAccumulateGradHook {
  Hook(BucketedGradientReducer* reducer, size_t bucket, size_t member)
      : reducer(reducer), bucket(bucket), member(member) {}
  void operator()(const torch::autograd::Variable& param) override { reducer->on_gradient(bucket, member, param); }
  BucketedGradientReducer* reducer;
  size_t bucket, member;
};

}  // namespace

BucketedGradientReducer::BucketedGradientReducer(std::shared_ptr<ReductionTarget> target, int64_t bucket_size,
                                                 bool overlap_comm)
    : target_(std::move(target)), overlap_(overlap_comm) {
  ACCEL_CHECK_ARG(bucket_size >= 1, "BucketedGradientReducer: bucket_size is ", bucket_size, ", expected >= 1");
  const auto& layout = *target_->layout;
  const int world = target_->world_size();
  // Reverse order: the last group's last parameter first.
  for (size_t g = layout.groups.size(); g-- > 0;) {
    const auto& group = layout.groups[g];
    Bucket current;
    auto close = [&] {
      if (current.members.empty()) return;
      buckets_.push_back(std::move(current));
      current = Bucket();
    };
    for (size_t i = group.params.size(); i-- > 0;) {
      const auto& fp = group.params[i];
      if (!current.members.empty() && current.end - fp.offset > bucket_size) close();
      if (current.members.empty()) {
        current.group = g;
        current.end = fp.offset + fp.numel;
        // The group's padding rides with its last parameter.
        if (i + 1 == group.params.size()) current.end = group.padded_numel;
      }
      current.begin = fp.offset;
      current.members.push_back(Member{g, i, fp.offset, fp.numel});
    }
    close();
  }
  for (auto& b : buckets_) {
    // The leading padding-free start of group: a group's first bucket starts at 0.
    const auto [rb, re] = std::pair<int64_t, int64_t>{b.begin, b.end};
    for (int o = 0; o < world; ++o) {
      const auto [ob, oe] = layout.rank_range(b.group, o);
      const int64_t lo = std::max(rb, ob), hi = std::min(re, oe);
      if (lo < hi) b.parts.push_back(Part{o, lo, hi, {}});
    }
    b.pending = b.members.size();
  }
  for (size_t k = 0; k < buckets_.size(); ++k)
    for (size_t m = 0; m < buckets_[k].members.size(); ++m) {
      const auto& mem = buckets_[k].members[m];
      const auto& p = target_->params->params(mem.group)[mem.index];
      if (!p.requires_grad()) continue;  // never gets a gradient: zeros at the end of backward
      auto& slot = torch::autograd::impl::post_acc_grad_hooks(p);
      ACCEL_CHECK_ARG(!slot, "ZeRO-2: parameter '", layout.groups[mem.group].params[mem.index].name,
                      "' already has a post-accumulate-grad hook (prepared twice?)");
      torch::autograd::impl::set_post_acc_grad_hooks(p, std::make_unique<Hook>(this, k, m));
      hooked_.push_back(p);
    }
}

BucketedGradientReducer::~BucketedGradientReducer() {
  for (auto& p : hooked_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

std::vector<std::vector<std::pair<size_t, size_t>>> BucketedGradientReducer::bucket_params() const {
  std::vector<std::vector<std::pair<size_t, size_t>>> out;
  for (const auto& b : buckets_) {
    out.emplace_back();
    for (const auto& m : b.members) out.back().emplace_back(m.group, m.index);
  }
  return out;
}

void BucketedGradientReducer::ensure_buffer(Bucket& b) {
  if (b.buffer.defined()) return;
  b.buffer = torch::zeros({b.end - b.begin}, target_->params->buffer(b.group).options());
  live_bytes_ += b.buffer.nbytes();
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
}

void BucketedGradientReducer::on_gradient(size_t bucket, size_t member, const torch::Tensor& param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!in_backward_) {
    in_backward_ = true;
    // Every bucket is completed in this pass (zeros for missing gradients),
    // so logically-zero slices can be overwritten.
    overwrite_ = target_->slices_zero;
    torch::autograd::Engine::get_default_engine().queue_callback([this] { on_backward_end(); });
  }
  auto& b = buckets_[bucket];
  const auto& m = b.members[member];
  ensure_buffer(b);
  torch::NoGradGuard no_grad;
  auto& grad = param.mutable_grad();
  if (grad.defined()) {
    b.buffer.narrow(0, m.offset - b.begin, m.numel).copy_(grad.reshape({-1}));
    grad = torch::Tensor();  // only the slice outlives the bucket
  }
  if (--b.pending == 0)
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch(next_launch_++);
}

void BucketedGradientReducer::launch(size_t k) {
  auto& b = buckets_[k];
  ensure_buffer(b);
  const int world = target_->world_size();
  if (world > 1) b.buffer.div_(static_cast<double>(world));
  for (auto& part : b.parts) {
    if (world == 1) break;  // the buffer is the sum already
    std::vector<torch::Tensor> t{b.buffer.narrow(0, part.begin - b.begin, part.end - part.begin)};
    c10d::ReduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.rootRank = part.owner;
    part.work = target_->group->reduce(t, opts);
  }
  b.in_flight = true;
  if (!overlap_) {
    complete(k);
    return;
  }
  for (size_t j = 0; j < k; ++j)
    if (buckets_[j].in_flight) complete(j);
}

void BucketedGradientReducer::complete(size_t k) {
  auto& b = buckets_[k];
  const int rank = target_->rank();
  const auto [ob, oe] = target_->owned[b.group];
  for (auto& part : b.parts) {
    if (part.work) part.work->wait();
    part.work.reset();
    if (part.owner != rank) continue;
    auto reduced = b.buffer.narrow(0, part.begin - b.begin, part.end - part.begin);
    auto& slice = target_->grad_slices[b.group];
    if (slice.device() != reduced.device()) {
      // Offload: through page-locked memory kept from step to step (a
      // pageable copy is several times slower, and pinning fresh memory at
      // every step costs more than the copy), then converted on the host.
      auto& host = part.host;
      if (!host.defined())
        host = torch::empty(reduced.sizes(), reduced.options().device(slice.device()).pinned_memory(reduced.is_cuda()));
      host.copy_(reduced);
      reduced = host;
    }
    auto into = slice.narrow(0, part.begin - ob, part.end - part.begin);
    if (overwrite_) {
      into.copy_(reduced);  // converts without a temporary, unlike add_ across dtypes
    } else {
      into.add_(reduced);
    }
  }
  live_bytes_ -= b.buffer.nbytes();
  b.buffer = torch::Tensor();
  b.in_flight = false;
  b.pending = b.members.size();
}

void BucketedGradientReducer::on_backward_end() {
  std::lock_guard<std::mutex> lock(mutex_);
  while (next_launch_ < buckets_.size()) launch(next_launch_++);
  for (size_t k = 0; k < buckets_.size(); ++k)
    if (buckets_[k].in_flight) complete(k);
  target_->slices_zero = false;
  in_backward_ = false;
  next_launch_ = 0;
}

void BucketedGradientReducer::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  ACCEL_CHECK_STATE(!in_backward_,
                    "ZeRO-2: the optimizer step came while a backward pass was still reducing gradients");
}

}  // namespace accel::zero
