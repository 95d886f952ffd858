#include "accel/launch/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <system_error>

namespace accel::launch {

Value Value::of_bool(bool b) {
  Value v;
  v.kind = Kind::boolean;
  v.boolean = b;
  return v;
}
Value Value::of_int(long long i) {
  Value v;
  v.kind = Kind::integer;
  v.integer = i;
  return v;
}
Value Value::of_number(double d) {
  Value v;
  v.kind = Kind::number;
  v.number = d;
  return v;
}
Value Value::of_text(std::string s) {
  Value v;
  v.kind = Kind::text;
  v.text = std::move(s);
  return v;
}
Value Value::of_list(std::vector<std::string> items) {
  Value v;
  v.kind = Kind::list;
  v.items = std::move(items);
  return v;
}

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const double a = std::fabs(d);
  const bool fixed = a == 0 || (a >= 1e-4 && a < 1e16);
  auto r = fixed ? std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed)
                 : std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  if (fixed) {
    if (s.find('.') == std::string::npos) s += ".0";
  } else {
    // Python writes the exponent with a sign and at least two digits: 1e-05, 1e+16.
    auto e = s.find('e');
    std::string mant = s.substr(0, e), exp = s.substr(e + 1);
    char sign = exp[0] == '-' ? '-' : '+';
    if (exp[0] == '-' || exp[0] == '+') exp = exp.substr(1);
    while (exp.size() > 2 && exp[0] == '0') exp = exp.substr(1);
    if (exp.size() < 2) exp = "0" + exp;
    s = mant + "e" + sign + exp;
  }
  return s;
}

std::string Value::str() const {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return boolean ? "True" : "False";
    case Kind::integer: return std::to_string(integer);
    case Kind::number: return python_float(number);
    case Kind::text: return text;
    case Kind::list: {
      std::string s = "[";
      for (size_t i = 0; i < items.size(); ++i) s += (i ? ", '" : "'") + items[i] + "'";
      return s + "]";
    }
  }
  return "";
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::none: return false;
    case Kind::boolean: return boolean;
    case Kind::integer: return integer != 0;
    case Kind::number: return number != 0;
    case Kind::text: return !text.empty();
    case Kind::list: return !items.empty();
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::number: return "float";
    case Kind::text: return "str";
    case Kind::list: return "list";
  }
  return "?";
}

namespace {

// PyYAML's implicit resolvers, matched by hand: std::regex matches by
// recursion, one frame per character, so a long scalar (a config value of
// 100,000 digits) would overflow the stack.
bool one_of(std::string_view t, std::initializer_list<std::string_view> words) {
  for (auto w : words)
    if (t == w) return true;
  return false;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_digit_or_underscore(char c) { return is_digit(c) || c == '_'; }

// [-+]?(0|[1-9][0-9_]*)
bool is_int(std::string_view t) {
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) t.remove_prefix(1);
  if (t == "0") return true;
  if (t.empty() || t[0] < '1' || t[0] > '9') return false;
  return std::all_of(t.begin(), t.end(), is_digit_or_underscore);
}

// [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?  (the number form)
bool is_decimal_float(std::string_view t) {
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
  if (i < t.size() && is_digit(t[i]))
    while (i < t.size() && is_digit_or_underscore(t[i])) ++i;
  if (i >= t.size() || t[i] != '.') return false;
  ++i;
  while (i < t.size() && is_digit_or_underscore(t[i])) ++i;
  if (i == t.size()) return true;
  if (t[i] != 'e' && t[i] != 'E') return false;
  ++i;
  if (i >= t.size() || (t[i] != '-' && t[i] != '+')) return false;
  ++i;
  if (i >= t.size()) return false;
  return std::all_of(t.begin() + static_cast<std::ptrdiff_t>(i), t.end(), is_digit);
}

std::string without_underscores(std::string_view t) {
  std::string s;
  for (char c : t)
    if (c != '_') s += c;
  return s;
}

}  // namespace

Value resolve_plain_scalar(const std::string& t) {
  // The implicit resolvers of PyYAML's SafeLoader (YAML 1.1).
  if (one_of(t, {"~", "null", "Null", "NULL", ""})) return {};
  if (one_of(t, {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})) return Value::of_bool(true);
  if (one_of(t, {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})) return Value::of_bool(false);
  if (is_int(t)) {
    const std::string digits = without_underscores(t);
    long long v = 0;
    const char* begin = digits.data() + (digits[0] == '+' ? 1 : 0);
    const auto r = std::from_chars(begin, digits.data() + digits.size(), v);
    // Python's int has no limit; a value past long long stays the text it
    // was, so that a key wanting an integer refuses it by name.
    if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return Value::of_text(t);
    return Value::of_int(v);
  }
  if (one_of(t, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})) return Value::of_number(INFINITY);
  if (one_of(t, {"-.inf", "-.Inf", "-.INF"})) return Value::of_number(-INFINITY);
  if (one_of(t, {".nan", ".NaN", ".NAN"})) return Value::of_number(NAN);
  if (is_decimal_float(t) && t != ".") {
    const std::string digits = without_underscores(t);
    // strtod, as Python's float(): past the double range is inf, not an error.
    char* end = nullptr;
    const double v = std::strtod(digits.c_str(), &end);
    if (end == digits.c_str() + digits.size()) return Value::of_number(v);
  }
  return Value::of_text(t);
}

}  // namespace accel::launch
