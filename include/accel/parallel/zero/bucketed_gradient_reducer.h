#pragma once
// ZeRO-2 gradients: reduced in buckets while backward runs, so that each
// rank keeps only its slice of the averaged gradient.
//
// A bucket is a contiguous range of one param group's flat layout, of about
// reduce_bucket_size elements, filled in reverse registration order (roughly
// the order backward produces gradients). Each parameter has a
// post-accumulate-grad hook: when its gradient for this backward is final,
// the hook copies it into the bucket's buffer and releases the parameter's
// .grad. When every parameter of a bucket is in, the bucket is reduced: for
// each rank whose slice intersects the bucket, a reduce of that part onto
// that rank (DeepSpeed's partition-wise reduce; the parts differ in size, so
// it is not one reduce-scatter). The owner adds its part, divided by the
// world size, to its fp32 gradient slice, and the buffer is freed.
//
// Buckets are launched in index order on every rank, whatever order the
// gradients arrive in, so all ranks issue the same collectives. The end of
// backward (an autograd engine callback queued by the first hook) launches
// what is left, with zeros for parameters that got no gradient, and waits.
// overlap_comm: a bucket's reduce runs while backward goes on; the previous
// bucket is waited for when the next one launches, so at most two buckets'
// buffers are in flight. Without it each reduce is waited for at once.
//
// Gradient accumulation: every backward reduces (DeepSpeed's way), and the
// slices accumulate the micro-batches; no full-size gradient outlives its
// bucket. no_sync therefore saves no communication under ZeRO-2.
#include <memory>
#include <mutex>
#include <vector>

#include "accel/parallel/zero/gradient_reducer.h"
#include "accel/util/export.h"

namespace accel::zero {

class ACCEL_API BucketedGradientReducer : public GradientReducer {
 public:
  BucketedGradientReducer(std::shared_ptr<ReductionTarget> target, int64_t bucket_size, bool overlap_comm);
  ~BucketedGradientReducer() override;

  void finish() override;
  void zero_grad() override {}
  int64_t held_bytes() const override { return 0; }
  int64_t peak_bytes() const override { return peak_bytes_; }

  /// Parameter indices (group, index in group) per bucket, in launch order.
  std::vector<std::vector<std::pair<size_t, size_t>>> bucket_params() const;

  // Called by the hooks and the end-of-backward callback.
  void on_gradient(size_t bucket, size_t member, const torch::Tensor& param);
  void on_backward_end();

 private:
  struct Member {
    size_t group, index;
    int64_t offset, numel;
  };
  struct Part {
    int owner;
    int64_t begin, end;  // flat range of the group
    c10::intrusive_ptr<c10d::Work> work;
    torch::Tensor host;  // offload, this rank's part: its host copy (kept)
  };
  struct Bucket {
    size_t group;
    int64_t begin, end;  // flat range of the group
    std::vector<Member> members;
    std::vector<Part> parts;
    size_t pending = 0;
    torch::Tensor buffer;
    bool in_flight = false;
  };

  void ensure_buffer(Bucket& b);
  void launch(size_t bucket);
  void complete(size_t bucket);
  void reset_pass();

  std::shared_ptr<ReductionTarget> target_;
  bool overlap_;
  std::vector<Bucket> buckets_;
  std::vector<torch::Tensor> hooked_;
  std::mutex mutex_;
  bool in_backward_ = false;
  bool overwrite_ = false;  // this pass writes the slices instead of adding
  size_t next_launch_ = 0;
  int64_t live_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace accel::zero
