#pragma once
// The CPU Adam inner loop on raw arrays, free of LibTorch headers so that its
// file can be compiled with its own flags (-O3, -fno-math-errno) and one copy
// per instruction set (AVX-512, AVX2+FMA, baseline x86-64) chosen at run time.
#include <cstdint>

namespace accel::detail {

enum class AdamGrad { f32, bf16 };
enum class AdamCopy { none, bf16, f16 };

/// The scalars of one step, computed once in double and rounded to float as
/// ATen rounds a Scalar for a float tensor.
struct AdamScalars {
  float beta1 = 0.9f, beta2 = 0.999f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;
  float eps = 1e-8f;
  float weight_decay = 0.f;           // Adam: added to the gradient as weight_decay * param
  float decay_factor = 1.f;           // AdamW: param *= 1 - lr * weight_decay
  float step_size = 1e-3f;            // lr / (1 - beta1^t)
  float sqrt_bias_correction2 = 1.f;  // sqrt(1 - beta2^t)
  float grad_scale = 1.f;             // the gradient is multiplied by it first (clipping)
  bool adamw = true;
  bool amsgrad = false;
};

/// One step over elements [begin, end) of the flat arrays. `max_exp_avg_sq`
/// is read only under amsgrad, `copy` only when copy_kind is not none.
struct AdamArrays {
  float* param = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  float* max_exp_avg_sq = nullptr;
  const void* grad = nullptr;
  AdamGrad grad_kind = AdamGrad::f32;
  void* copy = nullptr;  // uint16_t elements (bf16 or fp16 bits)
  AdamCopy copy_kind = AdamCopy::none;
};

void adam_update(const AdamScalars& s, const AdamArrays& a, int64_t begin, int64_t end);

/// The instruction set adam_update runs with on this machine ("avx512", "avx2" or "baseline").
const char* adam_isa();

}  // namespace accel::detail
