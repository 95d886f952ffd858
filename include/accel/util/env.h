#pragma once
// Reading the process environment with the checks every accel component
// wants: a bad value is an error that names the variable and what was
// expected, never a silent default.
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "accel/util/export.h"

namespace accel {

/// Where environment values come from. The default reads the real process
/// environment; tests pass a map.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// The real process environment.
ACCEL_API EnvLookup process_env();
/// A fixed set of variables (for tests and for launchers building a child's env).
ACCEL_API EnvLookup env_from_map(std::map<std::string, std::string> vars);

/// The variable if set and non-empty.
ACCEL_API std::optional<std::string> env_string(const EnvLookup& env, const std::string& name);
/// The variable parsed as an integer that fits an int; throws naming the
/// variable on a bad or out-of-range value.
ACCEL_API std::optional<long> env_int(const EnvLookup& env, const std::string& name);
/// Accepts 1/0, true/false, yes/no, on/off (any case); throws otherwise.
ACCEL_API std::optional<bool> env_bool(const EnvLookup& env, const std::string& name);

/// Parses an integer that fits an int, throwing
/// "<what>: expected an integer from -2147483648 to 2147483647, got '<text>'".
ACCEL_API long parse_int(const std::string& text, const std::string& what);
/// Parses a boolean like env_bool does.
ACCEL_API bool parse_bool(const std::string& text, const std::string& what);

}  // namespace accel
