#pragma once
// The side streams an offloaded unit copies on (CUDA only): host-to-device
// for the gathers, device-to-host for the gradient shards, so that the
// copies run beside the compute stream's kernels (and beside each other:
// the bus carries both directions at once).
//
// The memory a copy fills or reads belongs to one stream and is used by
// another; the helpers here tell the caching allocator, so that a block is
// reused only after every stream that touched it is past that point.
#include <optional>

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <torch/types.h>

namespace accel::fsdp {

struct CopyStreams {
  c10::Stream to_device;
  c10::Stream to_host;
};

/// Two pool streams of `device`; nullopt for a device without streams (CPU).
std::optional<CopyStreams> copy_streams_for(const torch::Device& device);
/// The current (compute) stream of `device`.
c10::Stream current_stream(const torch::Device& device);
/// `t`'s memory is in use on `stream` up to the work queued there now.
void record_use(const torch::Tensor& t, const c10::Stream& stream);
/// `waiter` runs nothing queued after this until `stream`'s work queued so far is done.
void wait_stream(const c10::Stream& waiter, const c10::Stream& stream);

}  // namespace accel::fsdp
