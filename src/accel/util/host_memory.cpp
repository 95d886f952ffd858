#include "accel/util/host_memory.h"

#include <torch/cuda.h>

#include <cstdlib>
#include <string>

#include "accel/util/check.h"

#ifdef ACCEL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace accel {

torch::Tensor host_empty(int64_t numel, torch::ScalarType dtype, bool pin) {
  const auto options = torch::TensorOptions().dtype(dtype).device(torch::kCPU);
#ifdef ACCEL_WITH_CUDA
  if (pin && numel > 0 && torch::cuda::is_available()) {
    const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    constexpr size_t kPage = 4096;
    void* ptr = nullptr;
    ACCEL_CHECK(posix_memalign(&ptr, kPage, (bytes + kPage - 1) / kPage * kPage) == 0, "host_empty: cannot allocate ",
                bytes, " bytes of host memory");
    const cudaError_t status = cudaHostRegister(ptr, bytes, cudaHostRegisterDefault);
    if (status != cudaSuccess) {
      std::free(ptr);
      cudaGetLastError();  // clear it: the next CUDA call must not see it
      fail<std::runtime_error>("host_empty: cannot page-lock ", bytes, " bytes of host memory (",
                               cudaGetErrorString(status), "); set pin_memory false to use plain memory");
    }
    return torch::from_blob(
        ptr, {numel},
        [](void* p) {
          cudaHostUnregister(p);
          std::free(p);
        },
        options);
  }
#endif
  (void)pin;
  return torch::empty({numel}, options);
}

}  // namespace accel
