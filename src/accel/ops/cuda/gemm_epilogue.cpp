#include "accel/ops/cuda/gemm_epilogue.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

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

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  explicit Preference(size_t workspace) {
    check_status(cublasLtMatmulPreferenceCreate(&pref), "preference");
    check_status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                      sizeof(workspace)),
                 "workspace preference");
  }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
};

struct Epilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;  // the bias (read) or the bias gradient (written)
  void* aux = nullptr;   // GELU's input: written by GELU_AUX_BIAS, read by DGELU_BGRAD
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
  const size_t workspace_size = std::min(at::cuda::getCUDABlasLtWorkspaceSize(), at::cuda::getChosenWorkspaceSize());
  Preference pref(workspace_size);
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc.desc, la.layout, lb.layout, ld.layout,
                                                               ld.layout, pref.pref, 1, &heuristic, &found);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return false;
  check_status(status, "heuristic");
  const float alpha = 1.0f, beta = 0.0f;
  check_status(cublasLtMatmul(handle, desc.desc, &alpha, a.data_ptr(), la.layout, b.data_ptr(), lb.layout, &beta,
                              d.data_ptr(), ld.layout, d.data_ptr(), ld.layout, &heuristic.algo, workspace,
                              workspace_size, at::cuda::getCurrentCUDAStream()),
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

bool gelu_input_grad(const torch::Tensor& grad_out, const torch::Tensor& weight, const torch::Tensor& pre,
                     const torch::Tensor& grad_pre, const torch::Tensor& grad_bias) {
  expect(grad_out, "grad_out", grad_out);
  const int64_t N = grad_out.size(0), M = grad_out.size(1);
  expect(weight, "weight", grad_out, M);
  const int64_t K = weight.size(1);
  expect(pre, "pre", grad_out, N, K);
  expect(grad_pre, "grad_pre", grad_out, N, K);
  expect_vector(grad_bias, "grad_bias", K, grad_out);
  if (N == 0) return false;
  Epilogue e{CUBLASLT_EPILOGUE_DGELU_BGRAD, grad_bias.data_ptr(), pre.data_ptr(), K};
  return matmul(CUBLAS_OP_N, weight, CUBLAS_OP_N, grad_out, grad_pre, e);
}

}  // namespace accel::kernels
