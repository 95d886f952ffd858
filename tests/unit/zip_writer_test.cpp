// The ZIP writer behind Comet's offline archives, read back here by a
// reader of the format's own fields (Python's zipfile reads the same
// archives in the comet_ml peer test): CRC-32, sizes and offsets in the
// local headers and the central directory, and the end record.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "accel/tracking/leveldb_log.h"
#include "accel/tracking/zip_writer.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_error;
using accel::testing::TempDir;

uint32_t u16(const std::string& b, size_t at) {
  return static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1]) << 8;
}
uint32_t u32(const std::string& b, size_t at) { return u16(b, at) | u16(b, at + 2) << 16; }

struct Read {
  std::string name, data;
  uint32_t crc, flags;
};

// The entries as the central directory lists them, each checked against its local header.
std::vector<Read> read_zip(const std::string& bytes) {
  EXPECT_GE(bytes.size(), 22u);
  const size_t end = bytes.size() - 22;  // no archive comment
  EXPECT_EQ(u32(bytes, end), 0x06054b50u);
  const uint32_t count = u16(bytes, end + 10), size = u32(bytes, end + 12), offset = u32(bytes, end + 16);
  EXPECT_EQ(offset + size, end);
  std::vector<Read> out;
  size_t at = offset;
  for (uint32_t i = 0; i < count; ++i) {
    EXPECT_EQ(u32(bytes, at), 0x02014b50u);
    Read r;
    r.flags = u16(bytes, at + 8);
    EXPECT_EQ(u16(bytes, at + 10), 0u);  // stored
    r.crc = u32(bytes, at + 16);
    const uint32_t compressed = u32(bytes, at + 20), plain = u32(bytes, at + 24);
    EXPECT_EQ(compressed, plain);
    const uint32_t name_length = u16(bytes, at + 28), extra = u16(bytes, at + 30), comment = u16(bytes, at + 32);
    const uint32_t local = u32(bytes, at + 42);
    r.name = bytes.substr(at + 46, name_length);
    // The local header repeats what the directory says.
    EXPECT_EQ(u32(bytes, local), 0x04034b50u);
    EXPECT_EQ(u16(bytes, local + 6), r.flags);
    EXPECT_EQ(u32(bytes, local + 14), r.crc);
    EXPECT_EQ(u32(bytes, local + 18), compressed);
    EXPECT_EQ(u32(bytes, local + 22), plain);
    EXPECT_EQ(bytes.substr(local + 30, u16(bytes, local + 26)), r.name);
    r.data = bytes.substr(local + 30 + u16(bytes, local + 26) + u16(bytes, local + 28), plain);
    out.push_back(r);
    at += 46 + name_length + extra + comment;
  }
  EXPECT_EQ(at, end);
  return out;
}

TEST(Crc32, MatchesTheCheckValueAndContinues) {
  // The CRC-32 catalogue's check value for "123456789".
  EXPECT_EQ(accel::crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(accel::crc32(""), 0u);
  EXPECT_EQ(accel::crc32("6789", accel::crc32("12345")), accel::crc32("123456789"));
}

TEST(ZipWriter, EntriesReadBackWithTheirCrcsAndSizes) {
  TempDir dir("zip");
  std::mt19937 random(7);
  std::string big(200000, '\0');
  for (char& c : big) c = static_cast<char>(random());
  {
    accel::ZipWriter zip(dir / "a.zip");
    zip.begin_entry("messages.json");
    zip.write("{\"a\":1}\n");
    zip.write("");
    zip.write("{\"b\":2}\n");
    zip.end_entry();
    zip.add("empty", "");
    zip.add("dir/big.bin", big);
    zip.add("ünïcode.txt", "x");
    zip.close();
  }
  const auto entries = read_zip(accel::testing::read_file(dir / "a.zip"));
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].name, "messages.json");
  EXPECT_EQ(entries[0].data, "{\"a\":1}\n{\"b\":2}\n");
  EXPECT_EQ(entries[0].crc, accel::crc32(entries[0].data));
  EXPECT_EQ(entries[0].flags, 0u);
  EXPECT_EQ(entries[1].data, "");
  EXPECT_EQ(entries[1].crc, 0u);
  EXPECT_EQ(entries[2].data, big);
  EXPECT_EQ(entries[2].crc, accel::crc32(big));
  EXPECT_EQ(entries[3].name, "ünïcode.txt");
  EXPECT_EQ(entries[3].flags, 1u << 11);  // the name is UTF-8
}

TEST(ZipWriter, MisuseAndUnwritablePathsAreRefused) {
  TempDir dir("zip");
  expect_error<std::runtime_error>([&] { accel::ZipWriter zip(dir / "missing" / "a.zip"); },
                                   {"cannot create", "missing/a.zip"});
  accel::ZipWriter zip(dir / "b.zip");
  expect_error<std::logic_error>([&] { zip.write("x"); }, {"outside an entry"});
  zip.begin_entry("one");
  expect_error<std::logic_error>([&] { zip.begin_entry("two"); }, {"\"one\" is open"});
  expect_error<std::logic_error>([&] { zip.close(); }, {"\"one\" is open"});
  zip.end_entry();
  expect_error<std::invalid_argument>([&] { zip.begin_entry(""); }, {"1 to 65535 bytes"});
  zip.close();
  expect_error<std::logic_error>([&] { zip.add("late", "x"); }, {"closed"});
}

}  // namespace
