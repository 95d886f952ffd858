#include "support/environment.h"

#include <cstdlib>

namespace accel::testing {

void apply(const EnvChange& change) {
  if (change.second)
    setenv(change.first.c_str(), change.second->c_str(), 1);
  else
    unsetenv(change.first.c_str());
}

void ScopedEnv::set(const std::string& name, const std::optional<std::string>& value) {
  const char* before = std::getenv(name.c_str());
  undo_.emplace_back(name, before ? std::optional<std::string>(before) : std::nullopt);
  apply({name, value});
}

ScopedEnv::~ScopedEnv() {
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) apply(*it);
}

}  // namespace accel::testing
