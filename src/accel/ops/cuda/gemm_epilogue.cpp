#include "accel/ops/cuda/gemm_epilogue.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cublasLt.h>

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel::kernels {

namespace {

void check_status(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt ") + what + " failed: " + cublasLtGetStatusString(status));
}

cudaDataType_t cuda_type(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat: return CUDA_R_32F;
    case c10::kBFloat16: return CUDA_R_16BF;
    default: return CUDA_R_16F;
  }
}

// Owning handles of cuBLASLt's descriptors.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasComputeType_t compute, cublasOperation_t op_a, cublasOperation_t op_b) {
    check_status(cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F), "matmul descriptor");
    set(CUBLASLT_MATMUL_DESC_TRANSA, op_a);
    set(CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(desc); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
  template <typename T>
  void set(cublasLtMatmulDescAttributes_t attribute, const T& value) {
    check_status(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)), "matmul attribute");
  }
};

// A row-major [rows, cols] matrix as cuBLASLt's column-major (cols x rows).
struct Layout {
  cublasLtMatrixLayout_t layout = nullptr;
  explicit Layout(const torch::Tensor& t) {
    check_status(cublasLtMatrixLayoutCreate(&layout, cuda_type(t.scalar_type()), static_cast<uint64_t>(t.size(1)),
                                            static_cast<uint64_t>(t.size(0)), t.size(1)),
                 "matrix layout");
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(layout); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// The largest power of two, up to 256, dividing the address: cuBLASLt's
// heuristic assumes 256-byte aligned matrices unless told otherwise, and an
// algorithm chosen on that assumption refuses a view that starts mid-block.
uint32_t alignment(const torch::Tensor& t) {
  const auto address = reinterpret_cast<uintptr_t>(t.data_ptr());
  uint32_t bytes = 256;
  while (bytes > 1 && address % bytes != 0) bytes /= 2;
  return bytes;
}

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  Preference(uint64_t workspace, uint32_t align_a, uint32_t align_b, uint32_t align_d) {
    check_status(cublasLtMatmulPreferenceCreate(&pref), "preference");
    set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace);
    set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
    set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
    set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d);
    set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d);
  }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  template <typename T>
  void set(cublasLtMatmulPreferenceAttributes_t attribute, const T& value) {
    check_status(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)), "preference");
  }
};

// What cuBLASLt's heuristic depends on for one call. Its answer is cached:
// asking it costs tens of microseconds of host time, five times a
// transformer block in every eager step.
struct AlgoKey {
  int device;
  int op_a, op_b, epilogue;
  c10::ScalarType type;
  bool tf32, has_bias, has_aux;
  int64_t a_rows, a_cols, b_rows, b_cols, d_rows, d_cols, ld_aux;
  uint64_t workspace;
  uint32_t align_a, align_b, align_d;
  bool operator==(const AlgoKey&) const = default;
};

struct AlgoKeyHash {
  size_t operator()(const AlgoKey& k) const {
    size_t h = 0;
    auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    for (int64_t v : {k.a_rows, k.a_cols, k.b_rows, k.b_cols, k.d_rows, k.d_cols, k.ld_aux})
      mix(static_cast<uint64_t>(v));
    mix(static_cast<uint64_t>(k.device) << 48 | static_cast<uint64_t>(k.op_a) << 40 |
        static_cast<uint64_t>(k.op_b) << 32 | static_cast<uint64_t>(k.epilogue) << 8 | static_cast<uint64_t>(k.type));
    mix(k.workspace);
    mix(static_cast<uint64_t>(k.align_a) << 32 | k.align_b << 16 | k.align_d << 3 | static_cast<uint64_t>(k.tf32) << 2 |
        static_cast<uint64_t>(k.has_bias) << 1 | k.has_aux);
    return h;
  }
};

// The heuristic's first algorithm for `key`, or nullopt when it has none.
// Process-wide: the shapes of a training run are few; a run of ever new
// shapes (variable lengths) starts the cache over past 4096 of them.
std::optional<cublasLtMatmulAlgo_t> cached_algo(const AlgoKey& key,
                                                const std::function<std::optional<cublasLtMatmulAlgo_t>()>& ask) {
  static std::mutex mutex;
  static std::unordered_map<AlgoKey, std::optional<cublasLtMatmulAlgo_t>, AlgoKeyHash> cache;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  auto algo = ask();
  const std::lock_guard<std::mutex> lock(mutex);
  if (cache.size() >= 4096) cache.clear();
  return cache.emplace(key, algo).first->second;
}

struct Epilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;  // the bias (read) or the bias gradient (written)
  void* aux = nullptr;   // GELU's input, written by GELU_AUX_BIAS
  int64_t ld_aux = 0;
};

// In cuBLASLt's column-major terms, with every row-major matrix seen as its
// transpose: d^T = op_a(a^T) @ op_b(b^T), d [n, m] row-major. Returns false
// when cuBLASLt has no algorithm for it.
bool matmul(cublasOperation_t op_a, const torch::Tensor& a, cublasOperation_t op_b, const torch::Tensor& b,
            const torch::Tensor& d, const Epilogue& epilogue) {
  const bool tf32 = d.scalar_type() == c10::kFloat && at::globalContext().allowTF32CuBLAS();
  MatmulDesc desc(tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, op_a, op_b);
  desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue.kind);
  if (epilogue.bias) desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, epilogue.bias);
  if (epilogue.aux) {
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, epilogue.aux);
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, epilogue.ld_aux);
  }
  Layout la(a), lb(b), ld(d);
  const c10::cuda::CUDAGuard device(d.device());
  // LibTorch's own handle and workspace for this stream (its GEMMs use
  // them the same way, stream-ordered). The workspace is cuBLAS's when
  // TORCH_CUBLASLT_UNIFIED_WORKSPACE is set: no larger than either size.
  (void)at::cuda::getCurrentCUDABlasHandle();  // sets up the stream's cuBLAS workspace
  cublasLtHandle_t handle = at::cuda::getCurrentCUDABlasLtHandle();
  void* workspace = at::cuda::getCUDABlasLtWorkspace();
  const uint64_t workspace_size = std::min(at::cuda::getCUDABlasLtWorkspaceSize(), at::cuda::getChosenWorkspaceSize());
  const AlgoKey key{d.get_device(),
                    op_a,
                    op_b,
                    epilogue.kind,
                    d.scalar_type(),
                    tf32,
                    epilogue.bias != nullptr,
                    epilogue.aux != nullptr,
                    a.size(0),
                    a.size(1),
                    b.size(0),
                    b.size(1),
                    d.size(0),
                    d.size(1),
                    epilogue.ld_aux,
                    workspace_size,
                    alignment(a),
                    alignment(b),
                    alignment(d)};
  const auto algo = cached_algo(key, [&]() -> std::optional<cublasLtMatmulAlgo_t> {
    Preference pref(workspace_size, key.align_a, key.align_b, key.align_d);
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc.desc, la.layout, lb.layout, ld.layout,
                                                                 ld.layout, pref.pref, 1, &heuristic, &found);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return std::nullopt;
    check_status(status, "heuristic");
    return heuristic.algo;
  });
  if (!algo) return false;
  const float alpha = 1.0f, beta = 0.0f;
  check_status(cublasLtMatmul(handle, desc.desc, &alpha, a.data_ptr(), la.layout, b.data_ptr(), lb.layout, &beta,
                              d.data_ptr(), ld.layout, d.data_ptr(), ld.layout, &*algo, workspace, workspace_size,
                              at::cuda::getCurrentCUDAStream()),
               "matmul");
  return true;
}

constexpr const char* kWho = "GEMM epilogue (cuBLASLt): ";

// A matrix the epilogue GEMMs take, of `like`'s type and device, [rows, cols]
// where those are >= 0.
void expect(const torch::Tensor& t, const char* name, const torch::Tensor& like, int64_t rows = -1, int64_t cols = -1) {
  ACCEL_CHECK_ARG(t.defined(), kWho, name, " is undefined");
  ACCEL_CHECK_ARG(gemm_epilogue_supports(t), kWho, name, " is ", describe_tensor(t.sizes(), t.scalar_type()), " on ",
                  t.device(),
                  ": expected a contiguous, 16-byte aligned CUDA matrix of float32, bfloat16 or float16 whose rows "
                  "hold a multiple of 8 elements");
  ACCEL_CHECK_ARG((rows < 0 || t.size(0) == rows) && (cols < 0 || t.size(1) == cols) &&
                      t.scalar_type() == like.scalar_type() && t.device() == like.device(),
                  kWho, name, " is ", describe_tensor(t.sizes(), t.scalar_type()), " on ", t.device(), ", expected [",
                  rows < 0 ? std::string("any") : std::to_string(rows), ", ",
                  cols < 0 ? std::string("any") : std::to_string(cols), "] of the type ", like.scalar_type(), " on ",
                  like.device());
}

void expect_vector(const torch::Tensor& t, const char* name, int64_t size, const torch::Tensor& like) {
  ACCEL_CHECK_ARG(t.defined(), kWho, name, " is undefined");
  ACCEL_CHECK_ARG(gemm_epilogue_supports_bias(t) && t.size(0) == size && t.scalar_type() == like.scalar_type() &&
                      t.device() == like.device(),
                  kWho, name, " is ", describe_tensor(t.sizes(), t.scalar_type()), ", expected a contiguous, aligned [",
                  size, "] of the type ", like.scalar_type(), " on ", like.device());
}

}  // namespace

bool gemm_epilogue_supports(const torch::Tensor& t) {
  if (!t.defined() || !t.is_cuda() || t.dim() != 2 || !t.is_contiguous()) return false;
  const auto type = t.scalar_type();
  if (type != c10::kFloat && type != c10::kBFloat16 && type != c10::kHalf) return false;
  return t.size(1) % 8 == 0 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

bool gemm_epilogue_supports_bias(const torch::Tensor& t) {
  return t.defined() && t.is_cuda() && t.dim() == 1 && t.is_contiguous() &&
         reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

bool linear_bias_gelu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                      const torch::Tensor& out, const torch::Tensor& pre) {
  expect(x, "x", x);
  const int64_t N = x.size(0), K = x.size(1);
  expect(weight, "weight", x, -1, K);
  const int64_t M = weight.size(0);
  expect_vector(bias, "bias", M, x);
  expect(out, "out", x, N, M);
  expect(pre, "pre", x, N, M);
  if (N == 0) return true;
  Epilogue e{CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias.data_ptr(), pre.data_ptr(), M};
  return matmul(CUBLAS_OP_T, weight, CUBLAS_OP_N, x, out, e);
}

bool linear_weight_and_bias_grad(const torch::Tensor& grad_out, const torch::Tensor& x,
                                 const torch::Tensor& grad_weight, const torch::Tensor& grad_bias) {
  expect(grad_out, "grad_out", grad_out);
  const int64_t N = grad_out.size(0), M = grad_out.size(1);
  expect(x, "x", grad_out, N);
  const int64_t K = x.size(1);
  expect(grad_weight, "grad_weight", grad_out, M, K);
  expect_vector(grad_bias, "grad_bias", M, grad_out);
  // No rows: nothing to reduce, and cuBLASLt takes no k = 0.
  if (N == 0) return false;
  Epilogue e{CUBLASLT_EPILOGUE_BGRADB, grad_bias.data_ptr(), nullptr, 0};
  return matmul(CUBLAS_OP_N, x, CUBLAS_OP_T, grad_out, grad_weight, e);
}

}  // namespace accel::kernels
