#include "accel/util/env.h"

#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/excerpt.h"
#include "accel/util/strings.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

namespace accel {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

EnvLookup env_from_map(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::optional<std::string> env_string(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (!v || v->empty()) return std::nullopt;
  return v;
}

long parse_int(const std::string& text, const std::string& what) {
  // Every integer accel reads from the environment ends up in an int (ranks,
  // sizes, ports, steps): one that does not fit is refused, not truncated.
  return parse_integer<int>(text, what);
}

bool parse_bool(const std::string& text, const std::string& what) {
  const std::string t = lower(text);
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t == "0" || t == "false" || t == "no" || t == "off") return false;
  fail<std::invalid_argument>(what, ": expected true/false (or 1/0, yes/no), got '", excerpt(text), "'");
}

std::optional<long> env_int(const EnvLookup& env, const std::string& name) {
  auto v = env_string(env, name);
  if (!v) return std::nullopt;
  return parse_int(*v, "environment variable " + name);
}

std::optional<bool> env_bool(const EnvLookup& env, const std::string& name) {
  auto v = env_string(env, name);
  if (!v) return std::nullopt;
  return parse_bool(*v, "environment variable " + name);
}

}  // namespace accel
