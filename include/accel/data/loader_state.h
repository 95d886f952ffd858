#pragma once
// LoaderState: where a loader stands, enough to continue exactly there.
// Checkpointing saves it (to_string) and a resumed run restores it into a
// new loader (DataLoader::load_state): the rest of the epoch, and every
// later epoch, are then the batches the uninterrupted run would have seen.
#include <cstdint>
#include <optional>
#include <string>

namespace accel {

struct LoaderState {
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

}  // namespace accel
