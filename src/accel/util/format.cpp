#include "accel/util/format.h"

#include <charconv>
#include <sstream>

#include <c10/util/Exception.h>

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

std::string error_message(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) return c10_error->what_without_backtrace();
  return error.what();
}

}  // namespace accel
