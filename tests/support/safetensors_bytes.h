#pragma once
// safetensors files written by hand, byte by byte: what a reader must
// accept from Python and refuse from a header that lies.
#include <cstdint>
#include <string>

namespace accel::testing {

/// `n` as the 8-byte little-endian header length, then `rest`.
inline std::string with_header_length(uint64_t n, const std::string& rest) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + rest;
}

/// A file: the header `json` with its length before it, `data` after it.
inline std::string safetensors_bytes(const std::string& json, const std::string& data = {}) {
  return with_header_length(json.size(), json + data);
}

}  // namespace accel::testing
