// Residual add + LayerNorm, forward and backward, each one kernel: ATen runs
// the add, then LayerNorm's forward (and in backward its input-gradient
// kernel, the weight/bias-gradient kernel and the add of the residual
// branch's gradient), each reading and writing the [rows, cols] stream.
#include <stdexcept>
#include <string>

#include "accel/ops/cuda/add_layer_norm_kernel.h"
#include "accel/ops/cuda/convert.cuh"

namespace accel::kernels {

namespace {

constexpr int kForwardThreads = 256;
constexpr int kForwardWarps = kForwardThreads / 32;
constexpr int kBackwardThreads = 256;
constexpr int kBackwardWarps = kBackwardThreads / 32;
// Elements per load and store in the backward where the rows allow it:
// 16 bytes of float32 (8 of bf16), and 192 of the 256 threads busy on
// GPT-2's 768 columns.
constexpr int kBackwardPack = 4;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename S, typename R, typename W, typename Y>
__global__ void __launch_bounds__(kForwardThreads) add_layer_norm_forward(AddLayerNormForwardArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t{blockIdx.x} * kForwardWarps + threadIdx.x / 32;
  if (row >= a.rows) return;
  const int64_t C = a.cols;
  // Without a residual (accel::layer_norm) the "sum" is x itself: nothing
  // is written for it and the later passes read x.
  const bool add = a.r != nullptr;
  const S* x = static_cast<const S*>(a.x) + row * C;
  const R* r = add ? static_cast<const R*>(a.r) + row * C : nullptr;
  S* s = add ? static_cast<S*>(a.sum) + row * C : nullptr;
  const S* stored = add ? s : x;  // the sum as stored, read by the second and third passes
  Y* y = static_cast<Y*>(a.out) + row * C;
  const W* w = static_cast<const W*>(a.weight);
  const W* b = static_cast<const W*>(a.bias);

  // The statistics are those of the sum as stored (rounded to S), as
  // LayerNorm would see it after a separate add. Each lane reads back only
  // the elements it wrote itself.
  float total = 0.0f;
  for (int64_t j = lane; j < C; j += 32) {
    S v = x[j];
    if (add) {
      v = from_float<S>(to_float(v) + to_float(r[j]));
      s[j] = v;
    }
    total += to_float(v);
  }
  const float mean = warp_sum(total) / static_cast<float>(C);
  // Centred second pass (the row is in L1): no cancellation of E[s^2] - mean^2.
  float squares = 0.0f;
  for (int64_t j = lane; j < C; j += 32) {
    const float d = to_float(stored[j]) - mean;
    squares += d * d;
  }
  const float rstd = rsqrtf(warp_sum(squares) / static_cast<float>(C) + a.eps);
  for (int64_t j = lane; j < C; j += 32) {
    float v = (to_float(stored[j]) - mean) * rstd;
    if (w) v *= to_float(w[j]);
    if (b) v += to_float(b[j]);
    y[j] = from_float<Y>(v);
  }
  if (lane == 0) {
    a.mean[row] = mean;
    a.rstd[row] = rstd;
  }
}

// The two row sums of the backward, added in a fixed order (the same
// result every run).
__device__ __forceinline__ float2 block_sum(float2 v) {
  __shared__ float2 partial[kBackwardWarps];
  v.x = warp_sum(v.x);
  v.y = warp_sum(v.y);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float2 total{0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < kBackwardWarps; ++i) {
    total.x += partial[i].x;
    total.y += partial[i].y;
  }
  __syncthreads();  // `partial` is written again for the next row
  return total;
}

// V consecutive elements from p (aligned to V of them), as float32.
template <int V, typename T>
__device__ __forceinline__ void load(const T* p, float (&out)[V]) {
  const Pack<T, V> pack = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = to_float(pack.v[i]);
}

template <int V, typename T>
__device__ __forceinline__ void store(T* p, const float (&in)[V]) {
  Pack<T, V> pack;
#pragma unroll
  for (int i = 0; i < V; ++i) pack.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T, V>*>(p) = pack;
}

// V elements a thread moves with one load or store: 1, or (where the row
// width divides by it and every pointer is aligned to it) kBackwardPack.
template <typename S, typename W, typename Y, int V>
__global__ void __launch_bounds__(kBackwardThreads) add_layer_norm_backward(AddLayerNormBackwardArgs a) {
  // This block's weight / bias gradient sums; thread t owns the columns
  // [t * V, t * V + V), then kBackwardThreads * V further, ... of both (the
  // same in every loop below), so no atomics and no barrier.
  extern __shared__ __align__(16) float column_sums[];
  const int64_t C = a.cols;
  float* dw = column_sums;
  float* db = column_sums + C;
  const bool partials = a.weight_grad_partial != nullptr;
  constexpr int64_t kStep = int64_t{kBackwardThreads} * V;
  const int64_t first = int64_t{threadIdx.x} * V;
  if (partials)
    for (int64_t j = first; j < C; j += kStep)
#pragma unroll
      for (int i = 0; i < V; ++i) dw[j + i] = db[j + i] = 0.0f;
  const W* w = static_cast<const W*>(a.weight);
  const float inv_c = 1.0f / static_cast<float>(C);

  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const Y* dy = static_cast<const Y*>(a.grad_out) + row * C;
    const S* s = static_cast<const S*>(a.sum) + row * C;
    const S* gs = a.grad_sum ? static_cast<const S*>(a.grad_sum) + row * C : nullptr;
    S* ds = static_cast<S*>(a.grad_input) + row * C;
    const float mean = a.mean[row], rstd = a.rstd[row];
    float2 sums{0.0f, 0.0f};  // sum of g = dy * w, sum of g * normalised
    for (int64_t j = first; j < C; j += kStep) {
      float sv[V], d[V], wv[V], pw[V], pb[V];
      load<V>(s + j, sv);
      load<V>(dy + j, d);
      if (w) load<V>(w + j, wv);
      if (partials) {
        load<V>(dw + j, pw);
        load<V>(db + j, pb);
      }
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float xhat = (sv[i] - mean) * rstd;
        const float g = w ? d[i] * wv[i] : d[i];
        sums.x += g;
        sums.y += g * xhat;
        if (partials) {
          pw[i] += d[i] * xhat;
          pb[i] += d[i];
        }
      }
      if (partials) {
        store<V>(dw + j, pw);
        store<V>(db + j, pb);
      }
    }
    sums = block_sum(sums);
    const float mean_g = sums.x * inv_c, mean_gx = sums.y * inv_c;
    for (int64_t j = first; j < C; j += kStep) {
      float sv[V], d[V], wv[V], gv[V], out[V];
      load<V>(s + j, sv);
      load<V>(dy + j, d);
      if (w) load<V>(w + j, wv);
      if (gs) load<V>(gs + j, gv);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float xhat = (sv[i] - mean) * rstd;
        const float g = w ? d[i] * wv[i] : d[i];
        out[i] = rstd * (g - mean_g - xhat * mean_gx);
        if (gs) out[i] += gv[i];
      }
      store<V>(ds + j, out);
    }
  }
  if (partials)
    for (int64_t j = first; j < C; j += kStep)
#pragma unroll
      for (int i = 0; i < V; ++i) {
        a.weight_grad_partial[int64_t{blockIdx.x} * C + j + i] = dw[j + i];
        a.bias_grad_partial[int64_t{blockIdx.x} * C + j + i] = db[j + i];
      }
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + " kernel launch failed: " + cudaGetErrorString(err));
}

[[noreturn]] void unsupported(const char* what) {
  throw std::invalid_argument(std::string(what) +
                              ": unsupported element types (sum float32 or bfloat16; residual the sum's type or "
                              "bfloat16; weight float32 or the sum's type; output float32 or bfloat16)");
}

// Calls f(S{}, R{}, W{}, Y{}) with the types named at run time.
template <typename F>
void dispatch(DType sum, DType r, DType weight, DType out, const char* what, F&& f) {
  using bf16 = __nv_bfloat16;
  if (sum == DType::f32 && weight == DType::f32) {
    if (r == DType::f32 && out == DType::f32) return f(float{}, float{}, float{}, float{});
    if (r == DType::f32 && out == DType::bf16) return f(float{}, float{}, float{}, bf16{});
    if (r == DType::bf16 && out == DType::f32) return f(float{}, bf16{}, float{}, float{});
    if (r == DType::bf16 && out == DType::bf16) return f(float{}, bf16{}, float{}, bf16{});
  }
  if (sum == DType::bf16 && r == DType::bf16) {
    if (weight == DType::f32 && out == DType::f32) return f(bf16{}, bf16{}, float{}, float{});
    if (weight == DType::f32 && out == DType::bf16) return f(bf16{}, bf16{}, float{}, bf16{});
    if (weight == DType::bf16 && out == DType::f32) return f(bf16{}, bf16{}, bf16{}, float{});
    if (weight == DType::bf16 && out == DType::bf16) return f(bf16{}, bf16{}, bf16{}, bf16{});
  }
  unsupported(what);
}

}  // namespace

bool add_layer_norm_kernel_supports(DType sum, DType r, DType weight, DType out) {
  const auto f32 = DType::f32, bf16 = DType::bf16;
  if (out != f32 && out != bf16) return false;
  if (sum == f32) return (r == f32 || r == bf16) && weight == f32;
  return sum == bf16 && r == bf16 && (weight == f32 || weight == bf16);
}

void launch_add_layer_norm_forward(const AddLayerNormForwardArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  if (a.cols <= 0)
    throw std::invalid_argument("add_layer_norm forward kernel: cols " + std::to_string(a.cols) + ", expected > 0");
  if (a.r && !a.sum) throw std::invalid_argument("add_layer_norm forward kernel: a residual but no sum to write");
  const int64_t blocks = (a.rows + kForwardWarps - 1) / kForwardWarps;
  // Without a residual r_dtype is not read: the sum's type stands for it.
  dispatch(a.sum_dtype, a.r ? a.r_dtype : a.sum_dtype, a.weight_dtype, a.out_dtype, "add_layer_norm forward kernel",
           [&](auto s, auto r, auto w, auto y) {
             add_layer_norm_forward<decltype(s), decltype(r), decltype(w), decltype(y)>
                 <<<static_cast<unsigned>(blocks), kForwardThreads, 0, stream>>>(a);
           });
  check_launch("add_layer_norm forward");
}

void launch_add_layer_norm_backward(const AddLayerNormBackwardArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  if (a.cols <= 0 || a.blocks <= 0)
    throw std::invalid_argument("add_layer_norm backward kernel: cols " + std::to_string(a.cols) + ", blocks " +
                                std::to_string(a.blocks) + ", expected both > 0");
  const size_t shared = a.weight_grad_partial ? 2 * sizeof(float) * static_cast<size_t>(a.cols) : 0;
  dispatch(
      a.sum_dtype, a.sum_dtype == DType::f32 ? DType::f32 : DType::bf16, a.weight_dtype, a.out_dtype,
      "add_layer_norm backward kernel", [&](auto s, auto, auto w, auto y) {
        using S = decltype(s);
        using W = decltype(w);
        using Y = decltype(y);
        // Packs where the row width divides by them and every row
        // array starts aligned to one (then every row does).
        constexpr int V = kBackwardPack;
        const bool packed = a.cols % V == 0 && packable(a.grad_out, a.cols, V, sizeof(Y)) &&
                            packable(a.sum, a.cols, V, sizeof(S)) && packable(a.grad_sum, a.cols, V, sizeof(S)) &&
                            packable(a.grad_input, a.cols, V, sizeof(S)) && packable(a.weight, a.cols, V, sizeof(W));
        auto kernel = packed ? add_layer_norm_backward<S, W, Y, V> : add_layer_norm_backward<S, W, Y, 1>;
        // Above 48 KiB of shared memory a kernel must ask for it.
        if (shared > 48 * 1024) {
          const cudaError_t err =
              cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
          if (err != cudaSuccess)
            throw std::invalid_argument("add_layer_norm backward kernel: " + std::to_string(a.cols) + " columns need " +
                                        std::to_string(shared) + " bytes of shared memory: " + cudaGetErrorString(err));
        }
        kernel<<<static_cast<unsigned>(a.blocks), kBackwardThreads, shared, stream>>>(a);
      });
  check_launch("add_layer_norm backward");
}

}  // namespace accel::kernels
