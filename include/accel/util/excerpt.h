#pragma once
// Quoting a user's value in an error message. A value can be anything a
// file holds (a 100,000-digit number, a 90 MB array), and a message that
// repeats it whole costs memory, time and the reader's screen: messages
// quote a short prefix and say how long the whole was.
#include <cstddef>
#include <string>
#include <string_view>

#include "accel/util/export.h"

namespace accel {

/// How many bytes of a value a message quotes by default.
inline constexpr size_t kExcerptBytes = 64;

/// `text` itself when it has at most `max_bytes` bytes, else its first
/// `max_bytes` bytes (never cutting a UTF-8 character) followed by
/// "... (N bytes)".
ACCEL_API std::string excerpt(std::string_view text, size_t max_bytes = kExcerptBytes);

}  // namespace accel
