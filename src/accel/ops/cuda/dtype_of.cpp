#include "accel/ops/cuda/dtype_of.h"

namespace accel::kernels {

std::optional<DType> dtype_of(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Float: return DType::f32;
    case c10::ScalarType::BFloat16: return DType::bf16;
    case c10::ScalarType::Half: return DType::f16;
    default: return std::nullopt;
  }
}

}  // namespace accel::kernels
