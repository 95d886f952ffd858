#pragma once
// RendezvousProgress: what `accel launch` shows while its workers gather.
// Rank 0 hosts the rendezvous store at MASTER_ADDR:MASTER_PORT and every
// rank marks its arrival there (dist/process_group.h); a thread of the
// launcher reads those marks as one more client of the store. When the
// ranks are not all there after `delay`, it reports how many are, every
// `interval`:
//   accel launch: rendezvous at 127.0.0.1:29500: 1/2 ranks arrived after 5 s (waiting for rank 1)
// redrawn in place on a terminal, one line per interval elsewhere (CI
// logs), and a last line when every rank has arrived. Nothing is shown
// before rank 0 has opened the store and marked its own arrival: until then
// an accel program cannot be told from one that never opens it, and a
// store without rank 0's mark (another program's rendezvous) is left alone. ACCEL_DISABLE_PROGRESS_BARS=1 or
// TQDM_DISABLE=1 turn it off, as they do every bar.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "accel/tracking/progress.h"
#include "accel/util/export.h"

namespace accel::launch {

struct ACCEL_API RendezvousProgressOptions {
  /// Nothing is shown before the ranks have had this long.
  TORCH_ARG(std::chrono::milliseconds, delay) = std::chrono::seconds(3);
  /// Not a terminal: time between two lines.
  TORCH_ARG(std::chrono::milliseconds, interval) = std::chrono::seconds(5);
  /// How often the store is asked.
  TORCH_ARG(std::chrono::milliseconds, poll) = std::chrono::milliseconds(250);
  /// Unset: on unless the environment turns progress bars off.
  TORCH_ARG(std::optional<bool>, enabled) = std::nullopt;
  TORCH_ARG(ProgressStream, out) = stderr;
};

/// The line for `arrived` of `world_size` ranks after `seconds`, naming up
/// to 8 missing ranks (`missing` in rank order).
ACCEL_API std::string rendezvous_line(const std::string& address, int arrived, int world_size, double seconds,
                                      const std::vector<int>& missing);

class ACCEL_API RendezvousProgress {
 public:
  /// Starts watching the store at `addr`:`port` for `world_size` ranks.
  /// Throws naming a world_size < 1 or a port outside 1..65535.
  RendezvousProgress(std::string addr, int port, int world_size, RendezvousProgressOptions options = {});
  /// stop()
  ~RendezvousProgress();
  RendezvousProgress(const RendezvousProgress&) = delete;
  RendezvousProgress& operator=(const RendezvousProgress&) = delete;
  /// Stops watching (the workers ended); ends a line left open.
  void stop();

 private:
  struct Watch;
  std::unique_ptr<Watch> watch_;
};

}  // namespace accel::launch
