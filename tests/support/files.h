#pragma once
// Files a test reads: what a program wrote, and where the trees are.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

namespace accel::testing {

/// The whole file, byte for byte ("" when it cannot be read).
std::string read_file(const std::filesystem::path& path);

/// Everything written to `file` so far (a tmpfile() a test handed to code
/// that prints, such as a progress bar), read from its start.
std::string contents(std::FILE* file);

/// The "name=value" lines of a file (what tests/probe and
/// tests/programs/dump_env.sh write); lines without '=' are passed over.
std::map<std::string, std::string> read_key_values(const std::filesystem::path& path);

/// Path of a file in the source tree / build tree.
std::string source_path(const std::string& relative);
std::string binary_path(const std::string& relative);

}  // namespace accel::testing
