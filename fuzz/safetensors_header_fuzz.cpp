// libFuzzer target: the safetensors header parser on arbitrary bytes.
//
// Checks, beyond "no crash, no out-of-bounds access, no leak" (ASan and
// UBSan are on): an accepted header describes tensors that tile the data
// bytes exactly, and writing the same tensors back gives a header that
// parses to the same tensors (the writer and the reader agree).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "accel/checkpoint/safetensors_format.h"

using namespace accel::safetensors;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_accepted(const Header& h, size_t file_size) {
  check(h.data_start() + h.data_size() == file_size);
  uint64_t at = 0;
  for (const auto& t : h.tensors) {
    check(t.begin == at && t.end >= t.begin);
    uint64_t n = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      check(d >= 0);
      n *= static_cast<uint64_t>(d);
    }
    check(n == t.nbytes());
    at = t.end;
  }
}

void check_round_trip(const Header& h) {
  std::vector<TensorSpec> specs;
  for (const auto& t : h.tensors) specs.push_back({t.name, t.dtype, t.shape});
  Header planned;
  try {
    planned = plan_layout(specs, h.metadata);
  } catch (const std::invalid_argument&) {
    return;  // "__metadata__"-free names are guaranteed; nothing else throws
  }
  std::string bytes;
  try {
    bytes = serialize_header(planned);
  } catch (const std::invalid_argument&) {
    return;  // a re-serialized header may exceed the size limit
  }
  bytes.resize(bytes.size() + planned.data_size());
  Header again = parse_file_header(bytes, "round trip");
  check(again.tensors.size() == h.tensors.size());
  check(again.metadata == h.metadata);
  for (const auto& t : again.tensors) {
    const TensorInfo* original = h.find(t.name);
    check(original && original->dtype == t.dtype && original->shape == t.shape);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Header header;
  try {
    header = parse_file_header(bytes, "fuzz");
  } catch (const std::runtime_error&) {
    return 0;  // refused: the expected outcome for most inputs
  }
  check_accepted(header, size);
  // Round trips rebuild the data bytes: keep them small.
  if (header.data_size() <= (1u << 20)) check_round_trip(header);
  return 0;
}
