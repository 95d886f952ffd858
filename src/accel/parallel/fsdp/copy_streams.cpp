#include "accel/parallel/fsdp/copy_streams.h"

#include <c10/core/impl/VirtualGuardImpl.h>

namespace accel::fsdp {

std::optional<CopyStreams> copy_streams_for(const torch::Device& device) {
  if (!device.is_cuda()) return std::nullopt;
  c10::impl::VirtualGuardImpl impl(device.type());
  return CopyStreams{impl.getStreamFromGlobalPool(device), impl.getStreamFromGlobalPool(device)};
}

c10::Stream current_stream(const torch::Device& device) {
  return c10::impl::VirtualGuardImpl(device.type()).getStream(device);
}

void record_use(const torch::Tensor& t, const c10::Stream& stream) {
  c10::impl::VirtualGuardImpl(stream.device_type())
      .recordDataPtrOnStream(t.storage().unsafeGetStorageImpl()->data_ptr(), stream);
}

void wait_stream(const c10::Stream& waiter, const c10::Stream& stream) {
  c10::Event done(stream.device_type());
  done.record(stream);
  done.block(waiter);
}

}  // namespace accel::fsdp
