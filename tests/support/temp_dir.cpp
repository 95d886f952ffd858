#include "support/temp_dir.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <system_error>

#include <gtest/gtest.h>

namespace accel::testing {

namespace {

// "Suite.Test" of the running test, cut to 40 characters (the folder's path
// stays short enough for the sockets some programs make in it), each
// character other than a letter, a digit, '.' and '-' made '_'.
std::string test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no_test";
  if (name.size() > 40) name.resize(40);
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return name;
}

}  // namespace

TempDir::TempDir(const std::string& tag) : owner_(::getpid()) {
  static std::atomic<int> count{0};
  path_ = std::filesystem::temp_directory_path() /
          ("accel_" + tag + "_" + test_name() + "_" + std::to_string(owner_) + "_" + std::to_string(count++));
  std::filesystem::remove_all(path_);  // a crashed run's, under a pid used again
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  if (keep_ || ::getpid() != owner_) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace accel::testing
