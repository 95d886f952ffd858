#include "accel/checkpoint/safetensors_format.h"

#include <algorithm>
#include <array>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"
#include "accel/util/excerpt.h"

namespace accel::safetensors {
namespace {

using json = nlohmann::json;

struct DtypeRow {
  Dtype dtype;
  std::string_view name;
  uint64_t size;
};

constexpr std::array<DtypeRow, 19> kDtypes{{
    {Dtype::BOOL, "BOOL", 1},
    {Dtype::U8, "U8", 1},
    {Dtype::I8, "I8", 1},
    {Dtype::F8_E5M2, "F8_E5M2", 1},
    {Dtype::F8_E4M3, "F8_E4M3", 1},
    {Dtype::F8_E8M0, "F8_E8M0", 1},
    {Dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 1},
    {Dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 1},
    {Dtype::I16, "I16", 2},
    {Dtype::U16, "U16", 2},
    {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2},
    {Dtype::I32, "I32", 4},
    {Dtype::U32, "U32", 4},
    {Dtype::F32, "F32", 4},
    {Dtype::C64, "C64", 8},
    {Dtype::F64, "F64", 8},
    {Dtype::I64, "I64", 8},
    {Dtype::U64, "U64", 8},
}};

constexpr std::string_view kMetadataKey = "__metadata__";

// The header is an object (depth 0) of tensor objects (depth 1) holding a
// shape array (depth 2). Anything deeper is refused while parsing, so that
// a hostile header cannot make the parser build a deep tree.
constexpr int kMaxDepth = 2;

struct HeaderRejected {
  std::string message;
};

// Builds the header's JSON tree from the parser's events, in time linear in
// the header: nlohmann's own callback parser rescans the whole enclosing
// object at the end of each entry (quadratic in the number of tensors).
// Refuses nesting deeper than kMaxDepth and a name given twice at the top
// level while building.
class HeaderBuilder {
 public:
  explicit HeaderBuilder(json& root) : root_(root) {}

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(json::number_integer_t v) { return put(v); }
  bool number_unsigned(json::number_unsigned_t v) { return put(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(v); }
  bool string(json::string_t& v) { return put(std::move(v)); }
  bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& name) {
    json& object = *open_.back();
    if (open_.size() == 1 && object.contains(name))
      throw HeaderRejected{"entry '" + excerpt(name) + "' appears twice in the header"};
    slot_ = &object[std::move(name)];
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    throw HeaderRejected{std::string("header is not valid JSON: ") + excerpt(e.what(), 160)};
  }

 private:
  // Where the next value goes: the root, the end of the open array, or the
  // slot its key made in the open object. Pointers stay valid: an array
  // grows only after the value last put into it is closed.
  json* place(json value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    *slot_ = std::move(value);
    return slot_;
  }
  bool put(json value) {
    place(std::move(value));
    return true;
  }
  bool open(json container) {
    if (open_.size() > static_cast<size_t>(kMaxDepth))
      throw HeaderRejected{"header nests deeper than a safetensors header can"};
    open_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  json& root_;
  std::vector<json*> open_;
  json* slot_ = nullptr;
};

/// Refuses the file `source`: the problem's parts after the file's name.
template <typename... Parts>
[[noreturn]] void reject(std::string_view source, const Parts&... problem) {
  fail<std::runtime_error>("safetensors file '", source, "': ", problem...);
}

/// Refuses the file `source` for the entry of `tensor`.
template <typename... Parts>
[[noreturn]] void reject_tensor(std::string_view source, std::string_view tensor, const Parts&... problem) {
  reject(source, "tensor '", excerpt(tensor), "': ", problem...);
}

std::string show_json(const json& value) {
  return excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace), 80);
}

uint64_t unsigned_entry(const json& value, std::string_view source, std::string_view tensor, std::string_view field) {
  if (!value.is_number_unsigned()) {
    reject_tensor(source, tensor, field, " must hold non-negative integers, found ", show_json(value));
  }
  return value.get<uint64_t>();
}

TensorInfo parse_tensor(const std::string& name, const json& entry, std::string_view source) {
  if (!entry.is_object()) reject_tensor(source, name, "entry must be an object, found ", show_json(entry));
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) reject_tensor(source, name, "missing \"dtype\" string");
  auto dtype = dtype_from_name(dtype_it->get_ref<const std::string&>());
  if (!dtype) reject_tensor(source, name, "unknown dtype ", show_json(*dtype_it));
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) reject_tensor(source, name, "missing \"shape\" array");
  // The bytes of the non-zero dimensions must fit int64, also when another
  // dimension is 0: [0, 2^62, 2^62] holds no bytes, but its strides (what
  // LibTorch computes for any tensor) overflow, and a shape that overflows
  // could otherwise describe a tiny byte range.
  constexpr uint64_t kMaxBytes = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t nbytes = dtype_size(info.dtype);
  bool empty = false;
  for (const auto& dim : *shape_it) {
    uint64_t d = unsigned_entry(dim, source, name, "shape");
    if (d > kMaxBytes) reject_tensor(source, name, "dimension ", d, " is too large");
    info.shape.push_back(static_cast<int64_t>(d));
    if (d == 0) {
      empty = true;
    } else if (nbytes > kMaxBytes / d) {
      reject_tensor(source, name, "shape ", show_json(*shape_it),
                    " overflows: more elements than a tensor can index (int64 bytes)");
    } else {
      nbytes *= d;
    }
  }
  if (empty) nbytes = 0;

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    reject_tensor(source, name, "missing \"data_offsets\" [begin, end]");
  }
  info.begin = unsigned_entry((*offsets_it)[0], source, name, "data_offsets");
  info.end = unsigned_entry((*offsets_it)[1], source, name, "data_offsets");
  if (info.end < info.begin) {
    reject_tensor(source, name, "data_offsets [", info.begin, ", ", info.end, "] end before they begin");
  }
  if (info.end - info.begin != nbytes) {
    reject_tensor(source, name, "shape ", show_json(*shape_it), " of ", dtype_name(info.dtype), " needs ", nbytes,
                  " bytes but data_offsets [", info.begin, ", ", info.end, "] hold ", info.end - info.begin);
  }
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& entry, std::string_view source) {
  std::map<std::string, std::string> metadata;
  if (entry.is_null()) return metadata;  // Python's reader accepts null here
  if (!entry.is_object()) reject(source, "\"__metadata__\" must be an object of strings, found ", show_json(entry));
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string()) {
      reject(source, "\"__metadata__\" entry '", excerpt(key), "' must be a string, found ", show_json(value));
    }
    metadata.emplace(key, value.get<std::string>());
  }
  return metadata;
}

// JSON string escaping as serde_json writes it (what Python's writer uses):
// quote, backslash and control characters only; other bytes verbatim.
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t extra;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    uint32_t cp = c & (0x3f >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

std::string_view dtype_name(Dtype dtype) { return kDtypes.at(static_cast<size_t>(dtype)).name; }

std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (const auto& row : kDtypes) {
    if (row.name == name) return row.dtype;
  }
  return std::nullopt;
}

uint64_t dtype_size(Dtype dtype) { return kDtypes.at(static_cast<size_t>(dtype)).size; }

const TensorInfo* Header::find(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t parse_header_size(const char (&prefix)[8], uint64_t file_size, std::string_view source) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(prefix[i]);
  if (n > kMaxHeaderSize) {
    reject(source, "header size ", n, " exceeds the ", kMaxHeaderSize,
           "-byte limit (not a safetensors file, or a corrupt one)");
  }
  if (file_size < 8) reject(source, "file is ", file_size, " bytes, shorter than the 8-byte header size");
  if (n > file_size - 8) reject(source, "header size ", n, " runs past the end of the file (", file_size, " bytes)");
  return n;
}

Header parse_header(std::string_view text, uint64_t file_size, std::string_view source) {
  if (file_size < 8 + text.size()) reject(source, "file is smaller than its header");
  json root;
  try {
    HeaderBuilder builder(root);
    json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const HeaderRejected& e) {
    reject(source, e.message);
  } catch (const json::exception& e) {
    reject(source, "header is not valid JSON: ", excerpt(e.what(), 160));
  }
  if (!root.is_object()) reject(source, "header must be a JSON object, found ", show_json(root));

  Header header;
  header.header_size = text.size();
  for (const auto& [name, entry] : root.items()) {
    if (name == kMetadataKey) {
      header.metadata = parse_metadata(entry, source);
    } else {
      header.tensors.push_back(parse_tensor(name, entry, source));
    }
  }

  // The tensors must tile the data bytes exactly. Checked after sorting by
  // offset, the way Python's reader does, so any entry order is accepted.
  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const uint64_t data_size = file_size - header.data_start();
  uint64_t expected = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& t : header.tensors) {
    if (t.begin < expected) {
      reject_tensor(source, t.name, "data_offsets [", t.begin, ", ", t.end, "] overlap those of tensor '",
                    excerpt(previous->name), "' (which end at ", expected, ")");
    }
    if (t.begin > expected) {
      reject_tensor(source, t.name, "data_offsets [", t.begin, ", ", t.end, "] leave a gap of ", t.begin - expected,
                    " bytes after ",
                    previous ? "tensor '" + excerpt(previous->name) + "'" : std::string("the start of the data"));
    }
    if (t.end > data_size) {
      reject_tensor(source, t.name, "data_offsets [", t.begin, ", ", t.end, "] run past the end of the file (",
                    data_size, " data bytes)");
    }
    expected = t.end;
    previous = &t;
  }
  if (expected != data_size) {
    reject(source, "the tensors cover ", expected, " data bytes but the file holds ", data_size,
           " (truncated or trailing bytes)");
  }
  return header;
}

Header parse_file_header(std::string_view file_bytes, std::string_view source) {
  if (file_bytes.size() < 8) {
    reject(source, "file is ", file_bytes.size(), " bytes, shorter than the 8-byte header size");
  }
  char prefix[8];
  std::copy_n(file_bytes.data(), 8, prefix);
  uint64_t n = parse_header_size(prefix, file_bytes.size(), source);
  return parse_header(file_bytes.substr(8, n), file_bytes.size(), source);
}

Header plan_layout(std::vector<TensorSpec> specs, std::map<std::string, std::string> metadata) {
  std::sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    if (a.dtype != b.dtype) return a.dtype > b.dtype;
    return a.name < b.name;
  });
  Header header;
  header.metadata = std::move(metadata);
  uint64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto& spec = specs[i];
    ACCEL_CHECK_ARG(i == 0 || spec.name != specs[i - 1].name, "safetensors: tensor name '", spec.name,
                    "' is given twice");
    ACCEL_CHECK_ARG(spec.name != kMetadataKey, "safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    uint64_t nbytes = dtype_size(spec.dtype);
    for (int64_t d : spec.shape) {
      ACCEL_CHECK_ARG(d >= 0, "safetensors: tensor '", spec.name, "' has a negative dimension");
      nbytes *= static_cast<uint64_t>(d);
    }
    header.tensors.push_back({std::move(spec.name), spec.dtype, std::move(spec.shape), offset, offset + nbytes});
    offset += nbytes;
  }
  return header;
}

std::string serialize_header(Header& header) {
  auto check_utf8 = [](std::string_view text, std::string_view what) {
    ACCEL_CHECK_ARG(valid_utf8(text), "safetensors: ", what, " is not valid UTF-8, which JSON requires");
  };
  // Compact JSON with the fields in the order Python's writer emits them.
  std::string out(8, '\0');
  out.push_back('{');
  bool first = true;
  if (!header.metadata.empty()) {
    out += "\"__metadata__\":{";
    for (const auto& [key, value] : header.metadata) {
      check_utf8(key, "metadata key '" + excerpt(key) + "'");
      check_utf8(value, "metadata value of '" + excerpt(key) + "'");
      if (!first) out.push_back(',');
      first = false;
      append_json_string(out, key);
      out.push_back(':');
      append_json_string(out, value);
    }
    out.push_back('}');
    first = false;
  }
  for (const auto& t : header.tensors) {
    check_utf8(t.name, "tensor name '" + excerpt(t.name) + "'");
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, t.name);
    out += ":{\"dtype\":\"";
    out += dtype_name(t.dtype);
    out += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) out.push_back(',');
      out += std::to_string(t.shape[i]);
    }
    out += "],\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]}";
  }
  out.push_back('}');
  // Pad so that the data bytes start 8-aligned, as Python does.
  while (out.size() % 8 != 0) out.push_back(' ');
  uint64_t n = out.size() - 8;
  ACCEL_CHECK_ARG(n <= kMaxHeaderSize, "safetensors: header of ", n, " bytes exceeds the ", kMaxHeaderSize,
                  "-byte limit readers accept");
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  header.header_size = n;
  return out;
}

}  // namespace accel::safetensors
