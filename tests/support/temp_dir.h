#pragma once
// A folder of the test's own under the system's temporary folder.
//
//   TempDir dir("ckpt");                 // /tmp/accel_ckpt_Suite.Test_<pid>_<n>
//   accel::save_model(net, dir / "model");
//
// As a fixture's member it serves every test of the fixture (one each).
#include <sys/types.h>

#include <filesystem>
#include <string>

namespace accel::testing {

/// A new, empty folder, removed with all it holds when the object goes.
/// Its name holds `tag`, the running test's name, the process id and a count
/// of the folders this process made, so that no two tests, processes (ctest
/// -j, a rerun) or objects share one. Only the process that made it removes
/// it: a forked child (a rank of run_distributed) that ends leaves it.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  operator const std::filesystem::path&() const { return path_; }  // usable wherever a path is
  std::filesystem::path operator/(const std::filesystem::path& name) const { return path_ / name; }

  /// Leaves the folder in place when the object goes (for a failed test's
  /// files to be looked at).
  void keep() { keep_ = true; }

 private:
  std::filesystem::path path_;
  pid_t owner_;
  bool keep_ = false;
};

}  // namespace accel::testing
