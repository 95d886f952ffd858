// The output layer's softmax, cross-entropy and logit gradient in one
// kernel: the ATen composition reads the logits for a log-softmax, writes
// it, reads it again for exp and once more for the one-hot correction.
// Here each row is read twice (the second time mostly from L2) and its
// gradient written once.
#include <cmath>
#include <stdexcept>
#include <string>

#include "accel/ops/cuda/convert.cuh"
#include "accel/ops/cuda/softmax_cross_entropy_kernel.h"

namespace accel::kernels {

namespace {

// 1024 threads a block, 2 blocks an SM: fewer rows in flight, so that a
// row (200 KB of float32 at GPT-2's vocab) is more likely still in L2 when
// the second pass reads it again.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// The running max and sum of exp(x - max) of a set of logits; empty: (-inf, 0).
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ void add(MaxSum& a, float x) {
  if (x == -INFINITY) return;  // exp(-inf - -inf) would be NaN
  if (x > a.max) {
    a.sum = a.sum * expf(a.max - x) + 1.0f;
    a.max = x;
  } else {
    a.sum += expf(x - a.max);
  }
}

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// Every thread gets the row's (max, sum).
__device__ MaxSum block_merge(MaxSum v) {
  __shared__ MaxSum partial[kWarps];
  for (int offset = 16; offset > 0; offset /= 2) {
    MaxSum o{__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)};
    v = merge(v, o);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < kWarps ? partial[lane] : MaxSum{-INFINITY, 0.0f};
  for (int offset = 16; offset > 0; offset /= 2) {
    MaxSum o{__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)};
    v = merge(v, o);
  }
  return v;
}

template <typename Tin, typename Tout, int VEC>
__global__ void __launch_bounds__(kThreads) softmax_cross_entropy_kernel(SoftmaxCrossEntropyArgs a) {
  const int64_t row = blockIdx.x;
  const Tin* x = static_cast<const Tin*>(a.logits) + row * a.ld_logits;
  const int64_t t = a.target[row];
  const bool ignored = t == a.ignore_index;
  const bool bad = !ignored && (t < 0 || t >= a.classes);
  const bool live = !ignored && !bad;

  // Read before any thread overwrites the row (the gradient may be written
  // in place); the block_merge barrier orders it before the second pass.
  float target_logit = 0.0f;
  if (threadIdx.x == 0 && live) target_logit = to_float(x[t]);

  MaxSum acc{-INFINITY, 0.0f};
  if (live) {
    const int64_t vec_end = a.classes / VEC * VEC;
    for (int64_t j = int64_t{threadIdx.x} * VEC; j < vec_end; j += int64_t{kThreads} * VEC) {
      const auto p = *reinterpret_cast<const Pack<Tin, VEC>*>(x + j);
#pragma unroll
      for (int k = 0; k < VEC; ++k) add(acc, to_float(p.v[k]));
    }
    for (int64_t j = vec_end + threadIdx.x; j < a.classes; j += kThreads) add(acc, to_float(x[j]));
  }
  const MaxSum row_stats = block_merge(acc);
  const float lse = row_stats.max + logf(row_stats.sum);
  if (threadIdx.x == 0) a.loss[row] = ignored ? 0.0f : bad ? NAN : lse - target_logit;
  if (a.grad == nullptr) return;

  Tout* g = static_cast<Tout*>(a.grad) + row * a.ld_grad;
  const float scale = a.grad_scale;
  for (int64_t j = int64_t{threadIdx.x} * VEC; j < a.cols; j += int64_t{kThreads} * VEC) {
    Pack<Tin, VEC> in;
    if (live) in = *reinterpret_cast<const Pack<Tin, VEC>*>(x + j);
    Pack<Tout, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const int64_t col = j + k;
      float v = 0.0f;
      if (bad) {
        v = NAN;
      } else if (live && col < a.classes) {
        v = (expf(to_float(in.v[k]) - lse) - (col == t ? 1.0f : 0.0f)) * scale;
      }
      out.v[k] = from_float<Tout>(v);
    }
    *reinterpret_cast<Pack<Tout, VEC>*>(g + j) = out;
  }
}

template <typename Tin, typename Tout>
void launch_typed(const SoftmaxCrossEntropyArgs& a, cudaStream_t stream) {
  constexpr int kVec = 4;
  const bool vec = a.cols % kVec == 0 && packable(a.logits, a.ld_logits, kVec, sizeof(Tin)) &&
                   packable(a.grad, a.ld_grad, kVec, sizeof(Tout));
  const dim3 grid(static_cast<unsigned>(a.rows));
  if (vec)
    softmax_cross_entropy_kernel<Tin, Tout, kVec><<<grid, kThreads, 0, stream>>>(a);
  else
    softmax_cross_entropy_kernel<Tin, Tout, 1><<<grid, kThreads, 0, stream>>>(a);
}

template <typename Tin>
void launch_out(const SoftmaxCrossEntropyArgs& a, cudaStream_t stream) {
  switch (a.grad == nullptr ? DType::f32 : a.grad_dtype) {
    case DType::f32: return launch_typed<Tin, float>(a, stream);
    case DType::bf16: return launch_typed<Tin, __nv_bfloat16>(a, stream);
    case DType::f16: return launch_typed<Tin, __half>(a, stream);
  }
}

}  // namespace

void launch_softmax_cross_entropy(const SoftmaxCrossEntropyArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  if (a.rows > 0x7fffffff || a.classes > a.cols || a.cols > a.ld_logits || (a.grad && a.cols > a.ld_grad))
    throw std::invalid_argument("softmax_cross_entropy kernel: rows " + std::to_string(a.rows) + ", classes " +
                                std::to_string(a.classes) + ", cols " + std::to_string(a.cols) +
                                ": expected rows < 2^31 and classes <= cols <= the row strides");
  switch (a.logits_dtype) {
    case DType::f32: launch_out<float>(a, stream); break;
    case DType::bf16: launch_out<__nv_bfloat16>(a, stream); break;
    case DType::f16: launch_out<__half>(a, stream); break;
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("softmax_cross_entropy kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace accel::kernels
