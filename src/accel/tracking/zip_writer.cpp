#include "accel/tracking/zip_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <utility>

#include "accel/tracking/leveldb_log.h"
#include "accel/util/check.h"

namespace accel {
namespace {

// Signatures and fixed fields of the ZIP format (PKWARE's APPNOTE.TXT).
constexpr uint32_t kLocalHeader = 0x04034b50u, kCentralHeader = 0x02014b50u, kEndRecord = 0x06054b50u;
constexpr uint16_t kVersion = 20;            // 2.0, what Python's zipfile writes
constexpr uint16_t kMadeByUnix = 3 << 8;     // host system: Unix, so the mode below is read
constexpr uint16_t kUtf8Name = 1 << 11;      // general purpose flag bit 11: the name is UTF-8
constexpr uint32_t kRegularFile = 0100644u;  // -rw-r--r--, in the external attributes' high half
constexpr uint64_t kMax32 = std::numeric_limits<uint32_t>::max();
constexpr size_t kCrcOffset = 14;  // crc-32, compressed size, uncompressed size follow

void put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v & 0xff);
  out += static_cast<char>(v >> 8);
}
void put32(std::string& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v & 0xffff));
  put16(out, static_cast<uint16_t>(v >> 16));
}

bool is_ascii(const std::string& text) {
  for (unsigned char c : text)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace

ZipWriter::ZipWriter(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ACCEL_CHECK(fd_ >= 0, "cannot create ", path_.string(), ": ", std::strerror(errno));
}

ZipWriter::~ZipWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ZipWriter::write_raw(std::string_view bytes) {
  ACCEL_CHECK_STATE(fd_ >= 0, "ZipWriter: ", path_.string(), " is closed");
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    ACCEL_CHECK(n > 0, "writing ", path_.string(), " failed: ", std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
    position_ += static_cast<uint64_t>(n);
  }
}

void ZipWriter::write_at(uint64_t offset, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    ACCEL_CHECK(n > 0, "writing ", path_.string(), " failed: ", std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
}

void ZipWriter::begin_entry(const std::string& name) {
  ACCEL_CHECK_STATE(!open_entry_, "ZipWriter: begin_entry(\"", name, "\") while \"", entries_.back().name,
                    "\" is open");
  ACCEL_CHECK_ARG(!name.empty() && name.size() <= std::numeric_limits<uint16_t>::max(),
                  "ZipWriter: an entry name must have 1 to 65535 bytes, got ", name.size());
  ACCEL_CHECK(entries_.size() < std::numeric_limits<uint16_t>::max(), "ZipWriter: ", path_.string(),
              " would hold more than 65535 entries (ZIP64 is not written)");
  ACCEL_CHECK(position_ <= kMax32, "ZipWriter: ", path_.string(), " passed 4 GiB (ZIP64 is not written)");
  Entry entry;
  entry.name = name;
  entry.offset = position_;
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  // MS-DOS dates start in 1980 and count seconds in twos.
  const int year = std::max(local.tm_year + 1900, 1980);
  entry.time = static_cast<uint16_t>((local.tm_hour << 11) | (local.tm_min << 5) | (local.tm_sec / 2));
  entry.date = static_cast<uint16_t>(((year - 1980) << 9) | ((local.tm_mon + 1) << 5) | local.tm_mday);
  std::string header;
  put32(header, kLocalHeader);
  put16(header, kVersion);
  put16(header, is_ascii(name) ? 0 : kUtf8Name);
  put16(header, 0);  // stored
  put16(header, entry.time);
  put16(header, entry.date);
  put32(header, 0);  // crc-32, compressed and uncompressed size: written back by end_entry()
  put32(header, 0);
  put32(header, 0);
  put16(header, static_cast<uint16_t>(name.size()));
  put16(header, 0);  // no extra field
  header += name;
  write_raw(header);
  entries_.push_back(std::move(entry));
  open_entry_ = true;
}

void ZipWriter::write(std::string_view data) {
  ACCEL_CHECK_STATE(open_entry_, "ZipWriter: write() outside an entry");
  Entry& entry = entries_.back();
  ACCEL_CHECK(entry.size + data.size() <= kMax32, "ZipWriter: the entry \"", entry.name, "\" of ", path_.string(),
              " passed 4 GiB (ZIP64 is not written)");
  entry.crc = crc32(data, entry.crc);
  entry.size += data.size();
  write_raw(data);
}

void ZipWriter::end_entry() {
  ACCEL_CHECK_STATE(open_entry_, "ZipWriter: end_entry() outside an entry");
  const Entry& entry = entries_.back();
  std::string fields;
  put32(fields, entry.crc);
  put32(fields, static_cast<uint32_t>(entry.size));
  put32(fields, static_cast<uint32_t>(entry.size));
  write_at(entry.offset + kCrcOffset, fields);
  open_entry_ = false;
}

void ZipWriter::add(const std::string& name, std::string_view data) {
  begin_entry(name);
  write(data);
  end_entry();
}

void ZipWriter::close() {
  ACCEL_CHECK_STATE(!open_entry_, "ZipWriter: close() while \"", entries_.back().name, "\" is open");
  const uint64_t directory_offset = position_;
  ACCEL_CHECK(directory_offset <= kMax32, "ZipWriter: ", path_.string(), " passed 4 GiB (ZIP64 is not written)");
  std::string directory;
  for (const Entry& entry : entries_) {
    put32(directory, kCentralHeader);
    put16(directory, kMadeByUnix | kVersion);
    put16(directory, kVersion);
    put16(directory, is_ascii(entry.name) ? 0 : kUtf8Name);
    put16(directory, 0);  // stored
    put16(directory, entry.time);
    put16(directory, entry.date);
    put32(directory, entry.crc);
    put32(directory, static_cast<uint32_t>(entry.size));
    put32(directory, static_cast<uint32_t>(entry.size));
    put16(directory, static_cast<uint16_t>(entry.name.size()));
    put16(directory, 0);  // extra field
    put16(directory, 0);  // comment
    put16(directory, 0);  // disk number
    put16(directory, 0);  // internal attributes
    put32(directory, kRegularFile << 16);
    put32(directory, static_cast<uint32_t>(entry.offset));
    directory += entry.name;
  }
  std::string end;
  put32(end, kEndRecord);
  put16(end, 0);  // this disk
  put16(end, 0);  // the disk the directory starts on
  put16(end, static_cast<uint16_t>(entries_.size()));
  put16(end, static_cast<uint16_t>(entries_.size()));
  put32(end, static_cast<uint32_t>(directory.size()));
  put32(end, static_cast<uint32_t>(directory_offset));
  put16(end, 0);  // no comment
  write_raw(directory + end);
  // On disk before the caller renames it into place: a crash then leaves the old name or the whole archive.
  const int fd = std::exchange(fd_, -1);
  const bool synced = ::fsync(fd) == 0 || errno == EINVAL;
  const int sync_error = errno;
  const bool closed = ::close(fd) == 0;
  ACCEL_CHECK(synced, "writing ", path_.string(), " failed: ", std::strerror(sync_error));
  ACCEL_CHECK(closed, "writing ", path_.string(), " failed: ", std::strerror(errno));
}

}  // namespace accel
