#pragma once
// The element types accel's CUDA kernels read and write, named without
// LibTorch (the .cu files include no torch header). The wrappers map
// c10::ScalarType to these; anything else takes the ATen path.
#include <cstdint>

namespace accel::kernels {

enum class DType : std::int8_t { f32, bf16, f16 };

}  // namespace accel::kernels
