#pragma once
// Numbers read from a user (flags, config keys, environment variables, file
// fields), checked against the type they end up in. A value that does not
// fit is an error naming the key and the value, never a silent truncation
// (4294967298 processes read as int is 2) and never a bare "stoll".
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "accel/util/export.h"

namespace accel {

/// All of `text` as a base-10 integer (an optional sign, digits) in
/// [min, max]. Throws std::invalid_argument "<what>: expected an integer,
/// got '<text>'", or for an integer out of range "<what>: expected an
/// integer from <min> to <max>, got '<text>'" (the text cut to a short prefix).
ACCEL_API long long parse_integer_in(std::string_view text, std::string_view what, long long min, long long max);

/// parse_integer_in over the whole range of T.
template <std::integral T>
T parse_integer(std::string_view text, std::string_view what) {
  static_assert(sizeof(T) < sizeof(long long) || std::is_signed_v<T>, "wider than long long");
  return static_cast<T>(parse_integer_in(text, what, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}

/// Throws std::invalid_argument "<what> <value>: expected an integer from
/// <min> to <max>" unless min <= value <= max; returns value.
ACCEL_API long long check_integer_in(long long value, std::string_view what, long long min, long long max);

/// `value` as a T; throws like check_integer_in when it does not fit.
template <std::integral T>
T checked_cast(long long value, std::string_view what) {
  static_assert(sizeof(T) < sizeof(long long) || std::is_signed_v<T>, "wider than long long");
  return static_cast<T>(check_integer_in(value, what, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}

/// The element count of a tensor shape read from a file, or nullopt when a
/// size is negative or the sizes other than 0 multiply past int64: LibTorch
/// computes strides from them, so [0, 2^62, 2^62] (0 elements) overflows too.
ACCEL_API std::optional<int64_t> element_count(std::span<const int64_t> shape);

/// All of `text` as a decimal floating-point number (inf and nan included).
/// Throws std::invalid_argument "<what>: expected a number, got '<text>'".
ACCEL_API double parse_number(std::string_view text, std::string_view what);

}  // namespace accel
