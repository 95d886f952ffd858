#include "accel/tracking/leveldb_log.h"

#include <algorithm>
#include <array>

namespace accel {
namespace {

constexpr size_t kBlock = 32768;
constexpr size_t kHeader = 7;  // a record's header, and the file's
enum : uint8_t { kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t crc32(std::string_view data, uint32_t crc) {
  // The reflected polynomial 0xEDB88320, one table lookup per byte.
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string LevelDbLog::file_header() {
  std::string out = ":W&B";
  append_le(out, 0xBEE1, 2);
  out.push_back('\0');
  block_offset_ = kHeader;
  return out;
}

std::string LevelDbLog::frame(std::string_view data) {
  std::string out;
  bool first = true;
  do {
    const size_t left = kBlock - block_offset_;
    if (left < kHeader) {  // too small for a header: pad, next block
      out.append(left, '\0');
      block_offset_ = 0;
      continue;
    }
    const size_t n = std::min(data.size(), left - kHeader);
    const bool last = n == data.size();
    const uint8_t type = first && last ? kFull : first ? kFirst : last ? kLast : kMiddle;
    const std::string_view piece = data.substr(0, n);
    append_le(out, crc32(piece, crc32(std::string_view(reinterpret_cast<const char*>(&type), 1))), 4);
    append_le(out, n, 2);
    out.push_back(static_cast<char>(type));
    out.append(piece);
    block_offset_ += kHeader + n;
    data.remove_prefix(n);
    first = false;
    if (last) break;
  } while (true);
  return out;
}

}  // namespace accel
