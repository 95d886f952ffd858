#pragma once
// LoaderState: where a loader stands, enough to continue exactly there.
// Checkpointing saves it (to_string) and a resumed run restores it into a
// new loader (DataLoader::load_state): the rest of the epoch, and every
// later epoch, are then the batches the uninterrupted run would have seen.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LoaderState {
  /// The epoch in progress (or the next one, between epochs).
  int64_t epoch = 0;
  /// Batches of that epoch already handed out on this rank.
  int64_t position = 0;
  /// The shuffle seed (none for an unshuffled loader).
  std::optional<uint64_t> seed;

  /// JSON: {"epoch":1,"position":3,"seed":42} ("seed":null when none).
  std::string to_string() const;
  /// Parses to_string's form; throws std::invalid_argument naming what is
  /// missing or malformed.
  static LoaderState from_string(const std::string& text);

  bool operator==(const LoaderState&) const = default;
};

/// Reads and restores one loader's state from outside the loader
/// (DataLoader::state_handle): it shares the loader's progress, so it stays
/// valid when the loader is moved, and keeps the loader's sampler alive.
class ACCEL_API LoaderStateHandle {
 public:
  LoaderStateHandle(std::function<LoaderState()> get, std::function<void(const LoaderState&)> set)
      : get_(std::move(get)), set_(std::move(set)) {}
  LoaderState state() const { return get_(); }
  /// As DataLoader::load_state: the loader's next pass continues there.
  void load_state(const LoaderState& state) const { set_(state); }

 private:
  std::function<LoaderState()> get_;
  std::function<void(const LoaderState&)> set_;
};

namespace detail {
/// A loader's progress: the epoch, the batches of it handed out, and the
/// batches its next pass skips.
struct LoaderCursor {
  int64_t epoch = 0;
  int64_t position = 0;
  int64_t pending_skip = 0;
};
}  // namespace detail

}  // namespace accel
