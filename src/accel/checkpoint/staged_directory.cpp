#include "accel/checkpoint/staged_directory.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "accel/checkpoint/atomic_file.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel {

namespace {

/// Refuses with the parts of the message, then the text of `error` (an errno).
template <typename... Parts>
[[noreturn]] void fail_io(int error, const Parts&... what) {
  fail<std::runtime_error>(what..., ": ", std::strerror(error));
}

// RENAME_EXCHANGE through the system call: glibc's wrapper needs 2.28 and
// _GNU_SOURCE, the call itself Linux 3.15.
bool exchange(const fs::path& a, const fs::path& b) {
#ifdef SYS_renameat2
  constexpr unsigned kRenameExchange = 1u << 1;
  if (syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), kRenameExchange) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) fail_io(errno, "cannot swap '", a.string(), "' with '", b.string(), "'");
#endif
  return false;  // the file system cannot swap
}

}  // namespace

fs::path staging_directory(const fs::path& target) {
  const fs::path clean = target.lexically_normal();
  const fs::path name = clean.has_filename() ? clean.filename() : clean.parent_path().filename();
  const fs::path parent = clean.has_filename() ? clean.parent_path() : clean.parent_path().parent_path();
  return parent / ("." + name.string() + ".staging");
}

void begin_staging(const fs::path& target) {
  const auto staging = staging_directory(target);
  std::error_code ec;
  fs::remove_all(staging, ec);
  if (ec) fail_io(ec.value(), "cannot clear the staging directory '", staging.string(), "'");
  fs::create_directories(staging, ec);
  if (ec) fail_io(ec.value(), "cannot create the staging directory '", staging.string(), "'");
}

void commit_staging(const fs::path& target) {
  const auto staging = staging_directory(target);
  const fs::path clean = target.lexically_normal();
  const fs::path dest = clean.has_filename() ? clean : clean.parent_path();
  sync_directory(staging);
  std::error_code ec;
  if (fs::exists(dest)) {
    ACCEL_CHECK(fs::is_directory(dest), "cannot save into '", dest.string(), "': it exists and is not a directory");
    if (!exchange(staging, dest)) {
      // No atomic swap here: move the old one aside first; a crash in
      // between leaves it complete under "<name>.old".
      const fs::path aside = dest.string() + ".old";
      fs::remove_all(aside, ec);
      if (std::rename(dest.c_str(), aside.c_str()) != 0) fail_io(errno, "cannot move '", dest.string(), "' aside");
      if (std::rename(staging.c_str(), dest.c_str()) != 0)
        fail_io(errno, "cannot rename '", staging.string(), "' to '", dest.string(), "'");
      fs::remove_all(aside, ec);
    } else {
      fs::remove_all(staging, ec);  // now the old directory
    }
  } else if (std::rename(staging.c_str(), dest.c_str()) != 0) {
    fail_io(errno, "cannot rename '", staging.string(), "' to '", dest.string(), "'");
  }
  sync_directory(dest.has_parent_path() ? dest.parent_path() : fs::path("."));
}

}  // namespace accel
