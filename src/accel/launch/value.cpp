#include "accel/launch/value.h"

#include <charconv>
#include <cmath>
#include <regex>

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

Value resolve_plain_scalar(const std::string& t) {
  // The implicit resolvers of PyYAML's SafeLoader (YAML 1.1).
  static const std::regex null_re("^(~|null|Null|NULL|)$");
  static const std::regex true_re("^(yes|Yes|YES|true|True|TRUE|on|On|ON)$");
  static const std::regex false_re("^(no|No|NO|false|False|FALSE|off|Off|OFF)$");
  static const std::regex int_re("^[-+]?(0|[1-9][0-9_]*)$");
  static const std::regex float_re(
      "^([-+]?([0-9][0-9_]*)?\\.[0-9_]*([eE][-+][0-9]+)?|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$");
  if (std::regex_match(t, null_re)) return {};
  if (std::regex_match(t, true_re)) return Value::of_bool(true);
  if (std::regex_match(t, false_re)) return Value::of_bool(false);
  if (std::regex_match(t, int_re)) {
    std::string digits;
    for (char c : t)
      if (c != '_') digits += c;
    try {
      return Value::of_int(std::stoll(digits));
    } catch (const std::out_of_range&) {
      return Value::of_text(t);
    }
  }
  if (std::regex_match(t, float_re) && t != ".") {
    std::string digits;
    for (char c : t)
      if (c != '_') digits += c;
    if (digits.find("inf") != std::string::npos || digits.find("Inf") != std::string::npos ||
        digits.find("INF") != std::string::npos)
      return Value::of_number(digits[0] == '-' ? -INFINITY : INFINITY);
    if (digits.find("nan") != std::string::npos || digits.find("NaN") != std::string::npos ||
        digits.find("NAN") != std::string::npos)
      return Value::of_number(NAN);
    return Value::of_number(std::stod(digits));
  }
  return Value::of_text(t);
}

}  // namespace accel::launch
