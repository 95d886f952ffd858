#include "accel/util/format.h"

#include <charconv>
#include <sstream>

namespace accel {

std::string format_double(double value) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

std::string describe_tensor(c10::IntArrayRef shape, c10::ScalarType type) {
  std::ostringstream out;
  out << shape << " " << type;
  return out.str();
}

}  // namespace accel
