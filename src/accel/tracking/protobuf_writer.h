#pragma once
// ProtobufWriter: the few protocol-buffer wire types TensorBoard's messages
// use, written by hand so that accel needs no protobuf library or generated
// code. A message is its fields one after the other; a nested message is a
// length-delimited field holding another writer's bytes.
//
//   ProtobufWriter value;
//   value.string(1, "loss");            // Summary.Value.tag
//   value.float32(2, 0.25f);            // Summary.Value.simple_value
//   ProtobufWriter summary;
//   summary.message(1, value);          // Summary.value
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace accel {

class ProtobufWriter {
 public:
  void varint(int field, uint64_t value) {
    key(field, 0);
    raw_varint(value);
  }
  void int64(int field, int64_t value) { varint(field, static_cast<uint64_t>(value)); }
  void float64(int field, double value) {
    key(field, 1);
    raw_fixed(value);
  }
  void float32(int field, float value) {
    key(field, 5);
    raw_fixed(value);
  }
  void bytes(int field, std::string_view value) {
    key(field, 2);
    raw_varint(value.size());
    out_.append(value);
  }
  void string(int field, std::string_view value) { bytes(field, value); }
  void message(int field, const ProtobufWriter& nested) { bytes(field, nested.out_); }
  /// A packed repeated double field (proto3's default for repeated scalars).
  template <typename Doubles>
  void packed_float64(int field, const Doubles& values) {
    ProtobufWriter packed;
    for (double v : values) packed.raw_fixed(v);
    bytes(field, packed.out_);
  }

  const std::string& data() const { return out_; }

 private:
  void key(int field, int wire_type) { raw_varint((static_cast<uint64_t>(field) << 3) | wire_type); }
  void raw_varint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7F) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  // Fixed-width fields are little-endian, as x86 and Arm store them.
  static_assert(std::endian::native == std::endian::little, "fixed-width fields are copied as they lie in memory");
  template <typename T>
  void raw_fixed(T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out_.append(bytes, sizeof(T));
  }

  std::string out_;
};

}  // namespace accel
