#pragma once
// DDPOptions: how DistributedDataParallel (parallel/ddp.h) buckets and
// all-reduces gradients, PyTorch's DistributedDataParallel arguments:
//   accel::DDPOptions().bucket_cap_mb(50).find_unused_parameters(true)
// Apart from ddp.h, which pulls in c10d's process-group headers, so that
// AcceleratorOptions can hold one cheaply (LibTorch's nn/options/ vs nn/modules/).
#include <torch/arg.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API DDPOptions {
  /// Bucket size in MiB (PyTorch's default 25). > 0.
  TORCH_ARG(double, bucket_cap_mb) = 25.0;
  /// Search the autograd graph after forward for parameters that got no
  /// gradient this step and mark them ready (needed when a branch is unused).
  TORCH_ARG(bool, find_unused_parameters) = false;
  /// Broadcast rank 0's buffers (e.g. BatchNorm statistics) before each forward.
  TORCH_ARG(bool, broadcast_buffers) = true;
  /// Gradients become views into the communication buckets (saves a copy).
  TORCH_ARG(bool, gradient_as_bucket_view) = false;
};

}  // namespace accel
