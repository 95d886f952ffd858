#include "accel/util/format.h"

#include <charconv>

namespace accel {

std::string format_double(double value) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

}  // namespace accel
