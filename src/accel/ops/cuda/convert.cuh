#pragma once
// Loads and stores between the kernels' element types and the float32 they
// compute in, and the aligned packs that let a thread move several
// elements with one memory instruction.
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "accel/ops/cuda/dtype.h"

namespace accel::kernels {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

// N consecutive elements, aligned so that one load or store moves them all.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Whether a pointer and a row stride allow packs of n elements of `bytes` each.
inline bool packable(const void* p, int64_t ld, int n, int bytes) {
  return p == nullptr ||
         (reinterpret_cast<std::uintptr_t>(p) % (static_cast<std::uintptr_t>(n) * bytes) == 0 && ld % n == 0);
}

inline int dtype_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

}  // namespace accel::kernels
