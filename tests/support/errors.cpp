#include "support/errors.h"

namespace accel::testing::detail {

std::string shown(const std::string& message) {
  constexpr size_t kMost = 1000;
  if (message.size() <= kMost) return message;
  return message.substr(0, kMost) + "... (" + std::to_string(message.size()) + " characters)";
}

}  // namespace accel::testing::detail
