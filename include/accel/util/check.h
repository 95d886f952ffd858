#pragma once
// One way to refuse, in the spirit of LibTorch's TORCH_CHECK: a condition,
// then the parts of the message, of any type std::ostream can write. The
// parts are evaluated only when the condition is false, so a check costs a
// branch on the path that passes.
//
//   ACCEL_CHECK_ARG(world_size >= 1, "world_size is ", world_size, ", expected >= 1");
//
// Which exception says who is to blame:
//   ACCEL_CHECK_ARG    std::invalid_argument  a value the caller or a user's file gave
//                      (Python's ValueError, TORCH_CHECK_VALUE)
//   ACCEL_CHECK        std::runtime_error     what the program met: files, processes,
//                      other ranks (TORCH_CHECK's RuntimeError)
//   ACCEL_CHECK_STATE  std::logic_error       a call out of order (before prepare(), twice)
// and accel::fail<Error>(parts...) throws unconditionally, where the
// condition was already decided (a switch's default, a parser's dead end).
//
// Messages name the value and what was expected. Write doubles through
// format_double() (util/format.h) and paths through .string(): std::ostream
// would round the one and quote the other.
#include <sstream>
#include <stdexcept>
#include <string>

namespace accel {

/// The parts written one after the other, as std::ostream writes them.
template <typename... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

/// Throws `Error` with the parts as its message.
template <typename Error = std::invalid_argument, typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(::accel::str(parts...));  // qualified: a c10 part would find c10::str by ADL
}

}  // namespace accel

#define ACCEL_CHECK_AS_(error, condition, ...) \
  do {                                         \
    if (!(condition)) [[unlikely]]             \
      ::accel::fail<error>(__VA_ARGS__);       \
  } while (false)

#define ACCEL_CHECK_ARG(condition, ...) ACCEL_CHECK_AS_(std::invalid_argument, condition, __VA_ARGS__)
#define ACCEL_CHECK(condition, ...) ACCEL_CHECK_AS_(std::runtime_error, condition, __VA_ARGS__)
#define ACCEL_CHECK_STATE(condition, ...) ACCEL_CHECK_AS_(std::logic_error, condition, __VA_ARGS__)
