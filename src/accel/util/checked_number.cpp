#include "accel/util/checked_number.h"

#include <charconv>
#include <stdexcept>
#include <system_error>

#include "accel/util/check.h"
#include "accel/util/excerpt.h"

namespace accel {
namespace {

std::string range_text(long long min, long long max) {
  return "an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

}  // namespace

long long parse_integer_in(std::string_view text, std::string_view what, long long min, long long max) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);  // strtol's "+3"
  long long value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  const bool integer = !digits.empty() && end == digits.data() + digits.size() &&
                       (error == std::errc() || error == std::errc::result_out_of_range);
  ACCEL_CHECK_ARG(integer, what, ": expected an integer, got '", excerpt(text), "'");
  ACCEL_CHECK_ARG(error == std::errc() && value >= min && value <= max, what, ": expected ", range_text(min, max),
                  ", got '", excerpt(text), "'");
  return value;
}

long long check_integer_in(long long value, std::string_view what, long long min, long long max) {
  ACCEL_CHECK_ARG(value >= min && value <= max, what, " ", value, ": expected ", range_text(min, max));
  return value;
}

std::optional<int64_t> element_count(std::span<const int64_t> shape) {
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0)
      empty = true;
    else if (__builtin_mul_overflow(nonzero, d, &nonzero))
      return std::nullopt;
  }
  return empty ? 0 : nonzero;
}

double parse_number(std::string_view text, std::string_view what) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  double value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  // A value past the double range is an error too (out of range), as strtod's ERANGE.
  ACCEL_CHECK_ARG(!digits.empty() && error == std::errc() && end == digits.data() + digits.size(), what,
                  ": expected a number, got '", excerpt(text), "'");
  return value;
}

}  // namespace accel
