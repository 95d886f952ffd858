#pragma once
// Per-rank output for `accel launch`: each worker's stdout / stderr can be
// copied to the console with a "[rank N]: " prefix on every line (`--tee`)
// and written to log files (`--log_dir`, one folder per attempt and rank:
// <log_dir>/attempt_<n>/<rank>/stdout.log and stderr.log, like torchrun).
// Streams that need neither go straight to the launcher's own.
//
// Memory and time stay linear in the output whatever a worker writes: a
// line longer than kMaxHeldLine is passed on in pieces as it arrives (the
// prefix before its first piece only), not held until its newline.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "accel/util/export.h"

namespace accel::launch {

class ACCEL_API OutputPump {
 public:
  /// The most bytes of an unfinished line held back per stream.
  static constexpr size_t kMaxHeldLine = 64 * 1024;

  /// `tee`: 0 none, 1 stdout, 2 stderr, 3 both are prefixed on the console.
  /// `log_dir`: empty for no files.
  OutputPump(int tee, std::string log_dir, int attempt);
  ~OutputPump();

  /// The descriptors to give rank `rank`'s stdout and stderr (-1: inherit).
  /// Call for every rank before start().
  std::pair<int, int> add_rank(int rank);
  /// Closes the workers' ends of the pipes; copies output in a thread.
  void start();
  /// Waits for the copies to end: every pipe closed, or nothing arriving for
  /// 0.5 s (a worker's own child may hold a pipe open after it exited).
  void finish();

 private:
  struct Stream {
    int rank;
    int fd_read = -1, fd_write = -1;  // pipe ends
    int console = -1;                 // 1 or 2 when copied to the console
    int file = -1;
    std::string partial;    // a line not finished yet, held back
    bool mid_line = false;  // part of the current line (and its prefix) was already written
  };
  void run();
  void emit(Stream& s, const char* data, size_t n, bool eof);

  int tee_;
  std::string dir_;
  std::vector<Stream> streams_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace accel::launch
