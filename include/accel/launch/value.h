#pragma once
// One value of Accelerate's YAML config or of `accel launch`'s arguments,
// typed the way Python sees it. The type matters because Accelerate builds
// the workers' environment with Python's str(): a YAML `true` becomes
// "True" in ACCELERATE_USE_CPU but "true" where Accelerate lower-cases it,
// a float 1 becomes "1.0". Keeping the type lets accel write the very same
// strings (see Value::str()).
#include <string>
#include <vector>

#include "accel/util/export.h"

namespace accel::launch {

struct ACCEL_API Value {
  enum class Kind { none, boolean, integer, number, text, list };

  Kind kind = Kind::none;
  bool boolean = false;
  long long integer = 0;
  double number = 0;
  std::string text;
  std::vector<std::string> items;  // a list's elements, each as Python's str()

  static Value of_bool(bool b);
  static Value of_int(long long i);
  static Value of_number(double d);
  static Value of_text(std::string s);
  static Value of_list(std::vector<std::string> items);

  bool is_none() const { return kind == Kind::none; }
  /// Python's str(value): True/False, 42, 1.0, 1e-05, the text itself, ['a', 'b'].
  std::string str() const;
  /// Python's truthiness (None, False, 0, "" and [] are false).
  bool truthy() const;
  /// "bool", "int", "float", "str", "list" or "None", for error messages.
  const char* type_name() const;

  bool operator==(const Value&) const = default;
};

/// Python's repr() of a float: the shortest text that reads back the same,
/// fixed notation for 1e-4 <= |x| < 1e16, always with a '.' or an exponent.
ACCEL_API std::string python_float(double d);

/// Reads a plain (unquoted) YAML scalar the way PyYAML's safe_load does
/// (YAML 1.1: yes/no/on/off are booleans, a float needs a '.', ~ is None).
ACCEL_API Value resolve_plain_scalar(const std::string& text);

}  // namespace accel::launch
