#pragma once
// Numbers and tensors in error messages. Numbers: the shortest text that reads back as the same
// double (0.1, not 0.10000000000000001), so a message quotes the value the
// user wrote.
#include <exception>
#include <string>

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include "accel/util/export.h"

namespace accel {

ACCEL_API std::string format_double(double value);

/// A tensor's shape and dtype as messages quote them: "[4, 8] Float".
ACCEL_API std::string describe_tensor(c10::IntArrayRef shape, c10::ScalarType type);

/// An exception's message for a user: what() of any exception, but without
/// the C++ stack trace LibTorch's c10::Error appends. A program's main()
/// prints this and exits non-zero (see examples/).
ACCEL_API std::string error_message(const std::exception& error);

}  // namespace accel
