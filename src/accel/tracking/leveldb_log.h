#pragma once
// LevelDbLog: the framing of W&B's run files (run-<id>.wandb), LevelDB's
// log format with a header of W&B's own:
//   file   := ":W&B" magic:uint16 (0xBEE1) version:uint8 (0), then blocks
//   block  := 32 KiB of records; fewer than 7 bytes left: zeros, next block
//   record := checksum:uint32 length:uint16 type:uint8 data[length]
// all little-endian; type FULL (1), or FIRST (2), MIDDLE (3), LAST (4) for
// data split across blocks; checksum: CRC-32 (zlib's) of the type byte
// followed by the data, unmasked (W&B's choice, not LevelDB's CRC-32C).
// The file header counts as the first 7 bytes of the first block.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace accel {

/// zlib's CRC-32 of `data`, continuing from `crc` (0 to start).
uint32_t crc32(std::string_view data, uint32_t crc = 0);

class LevelDbLog {
 public:
  /// The 7 bytes a file starts with.
  std::string file_header();
  /// The bytes that append `data` as one logical record, given what was
  /// framed before (the position within the current block).
  std::string frame(std::string_view data);

 private:
  size_t block_offset_ = 0;
};

}  // namespace accel
