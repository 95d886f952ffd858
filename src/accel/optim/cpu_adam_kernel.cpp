// Compiled with -O3 -fno-math-errno and without the precompiled header (see
// src/CMakeLists.txt): the loop below must auto-vectorise, sqrt included.
// Each (gradient type, copy type, amsgrad, decay mode) combination is one
// template instance, built three times: for AVX-512, for AVX2 with FMA and
// F16C, and for baseline x86-64 (SSE2), the best one picked once at run time.
#include "accel/optim/cpu_adam_kernel.h"

#include <cmath>
#include <cstring>

#define ACCEL_INLINE inline __attribute__((always_inline))

namespace accel::detail {
namespace {

ACCEL_INLINE uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
ACCEL_INLINE float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

ACCEL_INLINE float bf16_to_float(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

// Round to nearest even, NaN to the quiet NaN c10::BFloat16 uses.
ACCEL_INLINE uint16_t float_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(f != f ? 0x7fc0u : rounded);
}

// Round to nearest even, branch-free so that it vectorises (the method of
// F. Giesen's float_to_half_fast3_rtne): overflow to inf, NaN to a quiet NaN,
// subnormal halves through a float addition that rounds at the right bit.
ACCEL_INLINE uint16_t float_to_f16(float f) {
  uint32_t u = bits_of(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16u) << 23,
                 denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  const uint32_t big = u > f32_inf ? 0x7e00u : 0x7c00u;
  const uint32_t small = bits_of(float_of(u) + float_of(denorm_magic)) - denorm_magic;
  const uint32_t normal = (u + ((15u - 127u) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t out = u >= f16_max ? big : (u < (113u << 23) ? small : normal);
  return static_cast<uint16_t>(out | (sign >> 16));
}

template <AdamGrad G, AdamCopy C, bool AMS, bool ADAMW>
ACCEL_INLINE void adam_body(const AdamScalars& s, const AdamArrays& a, int64_t begin, int64_t end) {
  float* __restrict p = a.param;
  float* __restrict m = a.exp_avg;
  float* __restrict v = a.exp_avg_sq;
  float* __restrict vmax = a.max_exp_avg_sq;
  const float* __restrict g32 = static_cast<const float*>(a.grad);
  const uint16_t* __restrict g16 = static_cast<const uint16_t*>(a.grad);
  uint16_t* __restrict out = static_cast<uint16_t*>(a.copy);
  const float beta1 = s.beta1, beta2 = s.beta2, omb1 = s.one_minus_beta1, omb2 = s.one_minus_beta2;
  const float eps = s.eps, wd = s.weight_decay, decay = s.decay_factor;
  const float neg_step = -s.step_size, sqrt_bc2 = s.sqrt_bias_correction2, grad_scale = s.grad_scale;
  for (int64_t i = begin; i < end; ++i) {
    float g;
    if constexpr (G == AdamGrad::f32)
      g = g32[i];
    else
      g = bf16_to_float(g16[i]);
    g = g * grad_scale;
    float x = p[i];
    if constexpr (ADAMW)
      x = x * decay;
    else
      g = g + wd * x;
    const float mi = m[i] * beta1 + omb1 * g;
    const float vi = v[i] * beta2 + omb2 * g * g;
    m[i] = mi;
    v[i] = vi;
    float vv = vi;
    if constexpr (AMS) {
      vv = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vv;
    }
    const float denom = std::sqrt(vv) / sqrt_bc2 + eps;
    x = x + neg_step * (mi / denom);
    p[i] = x;
    if constexpr (C == AdamCopy::bf16) out[i] = float_to_bf16(x);
    if constexpr (C == AdamCopy::f16) out[i] = float_to_f16(x);
  }
}

using AdamFn = void (*)(const AdamScalars&, const AdamArrays&, int64_t, int64_t);

template <AdamGrad G, AdamCopy C, bool AMS, bool ADAMW>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))) void adam_avx512(const AdamScalars& s,
                                                                                        const AdamArrays& a,
                                                                                        int64_t begin, int64_t end) {
  adam_body<G, C, AMS, ADAMW>(s, a, begin, end);
}

template <AdamGrad G, AdamCopy C, bool AMS, bool ADAMW>
__attribute__((target("avx2,fma,f16c"))) void adam_avx2(const AdamScalars& s, const AdamArrays& a, int64_t begin,
                                                        int64_t end) {
  adam_body<G, C, AMS, ADAMW>(s, a, begin, end);
}

template <AdamGrad G, AdamCopy C, bool AMS, bool ADAMW>
void adam_baseline(const AdamScalars& s, const AdamArrays& a, int64_t begin, int64_t end) {
  adam_body<G, C, AMS, ADAMW>(s, a, begin, end);
}

enum class Isa { avx512, avx2, baseline };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::avx2;
  return Isa::baseline;
}

const Isa kIsa = detect_isa();

template <AdamGrad G, AdamCopy C, bool AMS, bool ADAMW>
AdamFn pick() {
  switch (kIsa) {
    case Isa::avx512: return &adam_avx512<G, C, AMS, ADAMW>;
    case Isa::avx2: return &adam_avx2<G, C, AMS, ADAMW>;
    case Isa::baseline: break;
  }
  return &adam_baseline<G, C, AMS, ADAMW>;
}

template <AdamGrad G, AdamCopy C, bool AMS>
AdamFn pick_decay(bool adamw) {
  return adamw ? pick<G, C, AMS, true>() : pick<G, C, AMS, false>();
}

template <AdamGrad G, AdamCopy C>
AdamFn pick_ams(bool amsgrad, bool adamw) {
  return amsgrad ? pick_decay<G, C, true>(adamw) : pick_decay<G, C, false>(adamw);
}

template <AdamGrad G>
AdamFn pick_copy(AdamCopy c, bool amsgrad, bool adamw) {
  switch (c) {
    case AdamCopy::bf16: return pick_ams<G, AdamCopy::bf16>(amsgrad, adamw);
    case AdamCopy::f16: return pick_ams<G, AdamCopy::f16>(amsgrad, adamw);
    case AdamCopy::none: break;
  }
  return pick_ams<G, AdamCopy::none>(amsgrad, adamw);
}

}  // namespace

void adam_update(const AdamScalars& s, const AdamArrays& a, int64_t begin, int64_t end) {
  const AdamFn fn = a.grad_kind == AdamGrad::bf16 ? pick_copy<AdamGrad::bf16>(a.copy_kind, s.amsgrad, s.adamw)
                                                  : pick_copy<AdamGrad::f32>(a.copy_kind, s.amsgrad, s.adamw);
  fn(s, a, begin, end);
}

const char* adam_isa() {
  switch (kIsa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::baseline: break;
  }
  return "baseline";
}

}  // namespace accel::detail
