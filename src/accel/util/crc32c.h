#pragma once
// CRC-32C (Castagnoli), the checksum of TFRecord framing (TensorBoard's
// event files). Table-driven: event records are small and written off the
// training thread, so speed beyond a table lookup per byte does not matter.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace accel {

/// CRC-32C of `data`, continuing from `crc` (0 to start).
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

/// TFRecord's masked CRC: a CRC stored next to data that itself holds
/// CRCs would checksum poorly, so it is rotated and offset.
inline uint32_t masked_crc32c(std::string_view data) {
  const uint32_t crc = crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace accel
