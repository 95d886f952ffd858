#pragma once
// The safetensors file format, without tensors: parsing and validating the
// header of an untrusted file, and laying out the header of a file to write.
//
//   [8 bytes: N, little-endian u64] [N bytes: JSON header] [data bytes]
//
// The JSON header maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets relative to the start of the data bytes) and may hold one
// "__metadata__" entry, a map of strings to strings.
//
// This file needs no LibTorch so that the parser can be fuzzed on its own
// (fuzz/) and every byte of an untrusted header is checked here, before any
// tensor is made. The rules are those of Hugging Face's Rust parser, which
// is what Python reads files with; a file this parser accepts, Python
// accepts too:
//   - N <= 100 MB and 8 + N <= file size;
//   - the header is UTF-8 JSON, an object of objects, nothing nested deeper;
//   - every dtype is known, every shape entry a non-negative integer, and
//     the element count times the element size (without overflow) equals
//     end - begin;
//   - sorted by offset, the tensors tile the data bytes exactly: the first
//     begins at 0, each begins where the previous ends (no gap, no
//     overlap), and the last ends at the end of the file.
// Entries may appear in any order in the JSON (older writers sorted by
// name); a repeated name is refused.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "accel/util/export.h"

namespace accel::safetensors {

/// Element types, in the order Python's safetensors ranks them (by
/// alignment): a writer lays tensors out in descending rank, then by name,
/// so that each tensor's bytes stay aligned for its type.
enum class Dtype : uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64,
};

/// The name in the header ("F32", "BF16", "F8_E4M3", ...).
ACCEL_API std::string_view dtype_name(Dtype dtype);
/// The dtype of a header name; nullopt when unknown.
ACCEL_API std::optional<Dtype> dtype_from_name(std::string_view name);
/// Bytes per element.
ACCEL_API uint64_t dtype_size(Dtype dtype);

/// One tensor entry of a header.
struct ACCEL_API TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  /// [begin, end) relative to the start of the data bytes.
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
};

/// A validated header.
struct ACCEL_API Header {
  /// In file order (ascending offsets).
  std::vector<TensorInfo> tensors;
  /// The "__metadata__" map; empty when absent.
  std::map<std::string, std::string> metadata;
  /// N, the JSON header's length in bytes.
  uint64_t header_size = 0;

  /// Offset in the file of the first data byte: 8 + N.
  uint64_t data_start() const { return 8 + header_size; }
  /// Bytes of tensor data (the sum of all tensors' sizes).
  uint64_t data_size() const { return tensors.empty() ? 0 : tensors.back().end; }
  /// The entry for `name`; null when absent. A linear scan: a reader that
  /// looks up many names indexes them once (safetensors::File does).
  const TensorInfo* find(std::string_view name) const;
};

/// Largest JSON header accepted, as in Python's safetensors.
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

/// Reads N from the file's first 8 bytes and checks it against the limit
/// and the file size. `source` names the file in errors.
/// Throws std::runtime_error.
ACCEL_API uint64_t parse_header_size(const char (&prefix)[8], uint64_t file_size, std::string_view source);

/// Parses and validates the JSON header (the N bytes after the prefix) of a
/// file of `file_size` bytes. Throws std::runtime_error naming `source`,
/// the tensor and the problem.
ACCEL_API Header parse_header(std::string_view json, uint64_t file_size, std::string_view source);

/// Both steps on a whole file held in memory.
ACCEL_API Header parse_file_header(std::string_view file_bytes, std::string_view source);

/// What a writer knows about a tensor before laying the file out.
struct ACCEL_API TensorSpec {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
};

/// Lays out a file: assigns offsets in Python's order (descending dtype
/// rank, then name by bytes) so that the same tensors give the same bytes
/// as Python's safetensors. Throws std::invalid_argument on a repeated or
/// reserved name ("__metadata__") or a negative dimension.
ACCEL_API Header plan_layout(std::vector<TensorSpec> specs, std::map<std::string, std::string> metadata = {});

/// The 8-byte prefix and the JSON header of a planned layout, padded with
/// spaces to a multiple of 8 bytes (so the data bytes start 8-aligned).
/// Sets header.header_size.
ACCEL_API std::string serialize_header(Header& header);

}  // namespace accel::safetensors
