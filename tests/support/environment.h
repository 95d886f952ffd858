#pragma once
// Changes to the process environment that a test makes, and undoes.
//
//   ScopedEnv env("HF_HOME", (dir / "hf").string());  // no user config here
//   env.set("XDG_CACHE_HOME", std::nullopt);           // unset
//   // ... both as they were when `env` goes
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace accel::testing {

/// A change to an environment: `first` set to `second`, or unset where
/// `second` is empty (std::nullopt).
using EnvChange = std::pair<std::string, std::optional<std::string>>;

/// Sets and unsets environment variables for its lifetime; when it goes,
/// each variable is as it was before (changes undone in reverse order).
class ScopedEnv {
 public:
  ScopedEnv() = default;
  ScopedEnv(const std::string& name, const std::optional<std::string>& value) { set(name, value); }
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

  /// Sets `name` to `value`, or unsets it where `value` is std::nullopt.
  void set(const std::string& name, const std::optional<std::string>& value);

 private:
  std::vector<EnvChange> undo_;  // each variable's value before each change
};

/// Applies `change` to this process's environment.
void apply(const EnvChange& change);

}  // namespace accel::testing
