#pragma once
// The arguments of `accel launch`: Accelerate's `accelerate launch` flags,
// with its names, defaults and value rules, plus a few of accel's own
// (marked in their help). Each flag is accepted with underscores and with
// dashes (--num_processes, --num-processes).
//
// LaunchArgs is the flat namespace Accelerate's launcher works on: every
// flag's value (its default until given) and which flags were given, so
// that config-file values can fill exactly the ones Accelerate lets them.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "accel/launch/value.h"
#include "accel/util/export.h"

namespace accel::launch {

struct ACCEL_API FlagSpec {
  enum class Kind { store_true, integer, number, text };
  std::string name;  // with underscores
  Kind kind;
  Value fallback;  // argparse's default (None when it has none)
  std::vector<std::string> choices;
  std::string help;
  bool accel_only = false;  // not an `accelerate launch` flag
};

/// Every flag `accel launch` takes, in help order.
ACCEL_API const std::vector<FlagSpec>& launch_flags();

struct ACCEL_API LaunchArgs {
  std::map<std::string, Value> values;  // flag name -> value (defaults until given)
  std::set<std::string> given;          // flags the user passed
  std::string program;                  // what to run (a path or a name on PATH)
  std::vector<std::string> program_args;

  /// All flags at their defaults.
  static LaunchArgs defaults();
  /// Sets a flag from its command-line text ("" for a store_true flag),
  /// checking the type and the allowed values; throws
  /// std::invalid_argument naming the flag, the value and what was expected.
  void set_flag(const std::string& name, const std::string& text);
  /// The value of a flag or of a key a config section filled in; None if unset.
  Value get(const std::string& name) const;
  bool flag(const std::string& name) const { return get(name).truthy(); }
  void set(const std::string& name, Value v) { values[name] = std::move(v); }
};

}  // namespace accel::launch
