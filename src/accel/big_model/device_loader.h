#pragma once
// Reads checkpoint tensors straight to a GPU: each tensor is read from its
// file (pread, no mapping touched) into one of two pinned staging buffers,
// then copied to the device on a side stream, so that reading the next
// tensor overlaps the copy of this one. Host memory: the two buffers, each
// as large as the largest tensor read. Internal to big_model.
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

#include <array>
#include <optional>

#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"

namespace accel::big_model {

class DeviceLoader {
 public:
  /// The tensor `info` of `file` on `device` (CUDA) in `dtype`; the copy may
  /// still be in flight on the side stream, which the device's current
  /// stream waits for before anything queued after this call.
  torch::Tensor load(const safetensors::File& file, const safetensors::TensorInfo& info, c10::Device device,
                     torch::ScalarType dtype);
  /// Waits for every copy (the staging buffers can then be freed).
  void finish();
  ~DeviceLoader();

 private:
  struct Staging {
    torch::Tensor bytes;  // pinned uint8
    std::optional<c10::Event> copied;
  };
  std::array<Staging, 2> staging_;
  size_t next_ = 0;
  std::optional<c10::Stream> stream_;
};

}  // namespace accel::big_model
