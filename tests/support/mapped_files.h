#pragma once
// Where a tensor's memory comes from, as the kernel reports it
// (/proc/self/maps): the tests of NVMe offload check that what is offloaded
// lies in mappings of files under the offload folder, not in anonymous host
// memory, and that the files hold its bytes.
#include <torch/types.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace accel::testing {

struct FileMapping {
  uintptr_t begin = 0, end = 0;
  uint64_t offset = 0;  // of `begin` in the file
  std::filesystem::path file;
};

/// This process's mappings of files under `folder`.
inline std::vector<FileMapping> mappings_under(const std::filesystem::path& folder) {
  std::vector<FileMapping> out;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find(folder.string()) == std::string::npos) continue;
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, file;
    in >> range >> perms >> offset >> dev >> inode >> file;
    const auto dash = range.find('-');
    out.push_back({std::stoull(range.substr(0, dash), nullptr, 16), std::stoull(range.substr(dash + 1), nullptr, 16),
                   std::stoull(offset, nullptr, 16), file});
  }
  return out;
}

/// The mapping `t`'s data lies in, if one of `maps`.
inline std::optional<FileMapping> mapping_of(const torch::Tensor& t, const std::vector<FileMapping>& maps) {
  const auto at = reinterpret_cast<uintptr_t>(t.data_ptr());
  for (const auto& m : maps)
    if (at >= m.begin && at < m.end) return m;
  return std::nullopt;
}

inline bool in_a_mapping(const torch::Tensor& t, const std::vector<FileMapping>& maps) {
  return mapping_of(t, maps).has_value();
}

/// Whether the file behind `t`'s mapping holds `t`'s bytes where the mapping
/// puts them (read through the file, not through the mapping). `t`: contiguous.
inline bool file_holds(const torch::Tensor& t, const FileMapping& m) {
  std::ifstream in(m.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(m.offset + (reinterpret_cast<uintptr_t>(t.data_ptr()) - m.begin)));
  std::string bytes(t.nbytes(), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return in.good() && std::memcmp(bytes.data(), t.data_ptr(), bytes.size()) == 0;
}

/// Entries (files and folders) directly in `folder`; 0 when it does not exist.
inline size_t files_in(const std::filesystem::path& folder) {
  size_t n = 0;
  if (std::filesystem::exists(folder))
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(folder)) ++n;
  return n;
}

}  // namespace accel::testing
