#include "accel/checkpoint/project_config.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace accel {

std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(const std::filesystem::path& checkpoints_dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(checkpoints_dir, ec)) return out;
  const std::string prefix = "checkpoint_";
  for (const auto& entry : std::filesystem::directory_iterator(checkpoints_dir)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0 || name.size() > prefix.size() + 18)
      continue;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) continue;
    out.emplace_back(std::stoll(digits), entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace accel
