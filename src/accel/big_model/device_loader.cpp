#include "accel/big_model/device_loader.h"

#include <c10/core/StreamGuard.h>

#include "accel/parallel/fsdp/copy_streams.h"
#include "accel/util/host_memory.h"

namespace accel::big_model {

torch::Tensor DeviceLoader::load(const safetensors::File& file, const safetensors::TensorInfo& info, c10::Device device,
                                 torch::ScalarType dtype) {
  const auto stored = safetensors::to_scalar_type(info.dtype);
  const auto options = torch::TensorOptions().dtype(stored).device(device);
  auto out = torch::empty(info.shape, options);  // on the device's current stream
  const int64_t nbytes = static_cast<int64_t>(info.nbytes());
  if (nbytes == 0) return dtype == stored ? out : out.to(dtype);
  if (!stream_) stream_ = fsdp::copy_streams_for(device)->to_device;
  const c10::Stream compute = fsdp::current_stream(device);

  Staging& slot = staging_[next_];
  next_ = (next_ + 1) % staging_.size();
  if (slot.copied) slot.copied->synchronize();  // its last copy has left the buffer
  if (!slot.bytes.defined() || slot.bytes.numel() < nbytes)
    slot.bytes = host_empty(nbytes, torch::kUInt8, /*pin=*/true);
  auto staged = slot.bytes.narrow(0, 0, nbytes).view(stored).view(info.shape);
  file.read_into(info.name, staged);  // pread into pinned memory

  // `out` may reuse memory the compute stream just freed: the copy waits for it.
  fsdp::wait_stream(*stream_, compute);
  {
    c10::StreamGuard on_copy(*stream_);
    out.copy_(staged, /*non_blocking=*/true);
  }
  fsdp::record_use(out, *stream_);
  c10::Event copied(device.type());
  copied.record(*stream_);
  copied.block(compute);
  slot.copied = std::move(copied);
  return dtype == stored ? out : out.to(dtype);
}

void DeviceLoader::finish() {
  for (auto& slot : staging_)
    if (slot.copied) {
      slot.copied->synchronize();
      slot.copied.reset();
    }
}

DeviceLoader::~DeviceLoader() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; finish() reports errors on the normal path
  }
}

}  // namespace accel::big_model
