#pragma once
// ZipWriter: a ZIP archive of stored (uncompressed) entries, as Python's
// zipfile.ZipFile(path, "w") writes by default (the form Comet's offline
// experiments take). An entry is streamed: begin_entry(), any number of
// write()s, end_entry(); its CRC-32 and sizes are then written back into
// its local header (the file is seekable, so no data descriptor is needed).
// close() writes the central directory and the end record.
//
// No ZIP64: an entry or an archive past 4 GiB, or more than 65535 entries,
// is refused by name rather than written in a form readers misread.
// Private to the library. Its CRC-32 is W&B's (leveldb_log.h: the same
// zlib polynomial).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace accel {

class ZipWriter {
 public:
  /// Creates `path` (an existing file is replaced); throws naming it and
  /// the system's reason when it cannot.
  explicit ZipWriter(std::filesystem::path path);
  /// Closes the file; an archive not close()d is left incomplete.
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  /// Starts an entry named `name` (UTF-8, '/' between folders), dated now.
  void begin_entry(const std::string& name);
  void write(std::string_view data);
  void end_entry();
  /// begin_entry, write, end_entry.
  void add(const std::string& name, std::string_view data);
  /// Writes the central directory and the end record, and closes the file.
  void close();

  const std::filesystem::path& path() const { return path_; }

 private:
  struct Entry {
    std::string name;
    uint16_t time = 0, date = 0;  // MS-DOS local time
    uint32_t crc = 0;
    uint64_t size = 0, offset = 0;
  };
  void write_raw(std::string_view bytes);
  void write_at(uint64_t offset, std::string_view bytes);

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t position_ = 0;
  bool open_entry_ = false;
  std::vector<Entry> entries_;
};

}  // namespace accel
