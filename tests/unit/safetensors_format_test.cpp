// The safetensors header parser against hand-made files: what Python
// writes is accepted, and every lie a header can tell is refused with an
// error that names the file, the tensor and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <source_location>
#include <string>
#include <vector>

#include "accel/checkpoint/safetensors.h"
#include "support/errors.h"
#include "support/safetensors_bytes.h"
#include "support/temp_dir.h"

namespace st = accel::safetensors;
using accel::testing::expect_error;
using accel::testing::safetensors_bytes;
using accel::testing::TempDir;
using accel::testing::with_header_length;

namespace {

// 8-byte little-endian length, the JSON text, then `data_size` data bytes.
std::string craft(const std::string& json, size_t data_size = 0) {
  return safetensors_bytes(json, std::string(data_size, '\x01'));
}

class SafetensorsFormat : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& bytes) {
    auto path = dir_ / "crafted.safetensors";
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  // The file is refused both through the mapped reader and the in-memory
  // one, with every fragment in the message.
  void expect_refused(const std::string& bytes, std::initializer_list<std::string> fragments,
                      std::source_location where = std::source_location::current()) {
    const auto path = write(bytes);
    std::vector<std::string> with_path(fragments);
    with_path.push_back(path.string());
    {
      SCOPED_TRACE("the mapped reader");
      expect_error<std::runtime_error>([&] { st::File file(path); }, with_path, where);
    }
    SCOPED_TRACE("the in-memory reader");
    expect_error<std::runtime_error>([&] { st::load(bytes); }, fragments, where);
  }

  TempDir dir_{"safetensors"};
};

TEST_F(SafetensorsFormat, KnownBytesOfPythonsWriter) {
  // Bytes of safetensors' own serialization test (one F32 [1, 2, 3] tensor
  // named "attn.0", values 0..5): what Python writes for it.
  std::vector<float> values{0, 1, 2, 3, 4, 5};
  auto t = torch::from_blob(values.data(), {1, 2, 3}, torch::kFloat32);
  std::string bytes = st::save({{"attn.0", t}});
  std::string json = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  std::string expected = with_header_length(64, json);
  expected.append(64 - json.size(), ' ');
  expected.append(reinterpret_cast<const char*>(values.data()), 24);
  EXPECT_EQ(bytes, expected);

  // No tensors: "{}" padded to 8 bytes; with metadata.
  EXPECT_EQ(st::save({}), with_header_length(8, "{}      "));
  EXPECT_EQ(st::save({}, {{"framework", "pt"}}), with_header_length(40, R"({"__metadata__":{"framework":"pt"}})"
                                                                        "     "));
}

TEST_F(SafetensorsFormat, PythonOrderIsDescendingAlignmentThenName) {
  auto header = st::plan_layout({{"b", st::Dtype::U8, {2}},
                                 {"a", st::Dtype::U8, {2}},
                                 {"c", st::Dtype::F64, {1}},
                                 {"d", st::Dtype::U16, {1}},
                                 {"e", st::Dtype::C64, {1}},
                                 {"f", st::Dtype::BOOL, {3}}});
  std::vector<std::string> order;
  for (const auto& t : header.tensors) order.push_back(t.name);
  EXPECT_EQ(order, (std::vector<std::string>{"c", "e", "d", "a", "b", "f"}));
  EXPECT_EQ(header.tensors[0].begin, 0u);
  EXPECT_EQ(header.tensors[1].begin, 8u);
  EXPECT_EQ(header.data_size(), 8u + 8 + 2 + 2 + 2 + 3);
}

TEST_F(SafetensorsFormat, AcceptsAnyEntryOrderAndUnpaddedHeaders) {
  // Entries out of offset order in the JSON (older writers sorted by name),
  // and a header length that is not a multiple of 8 (data misaligned).
  std::string json = R"({"zz":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  ASSERT_NE((8 + json.size()) % 4, 0u);
  std::string bytes = craft(json);
  float values[3] = {1.5f, -2.f, 3.25f};
  bytes.append(reinterpret_cast<const char*>(values), sizeof values);
  auto path = write(bytes);
  st::File file(path);
  EXPECT_EQ(file.keys(), (std::vector<std::string>{"zz", "a"}));
  EXPECT_EQ(file.get("zz").item<float>(), 1.5f);
  auto a = file.get("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data_ptr()) % alignof(float), 0u);  // copied, not misread
  EXPECT_EQ(a[0].item<float>(), -2.f);
  EXPECT_EQ(a[1].item<float>(), 3.25f);
  EXPECT_TRUE(st::load(bytes).contains("a"));
}

TEST_F(SafetensorsFormat, RefusesShortFiles) {
  expect_refused("", {"shorter than the 8-byte header size"});
  expect_refused("\x08\x00\x00", {"shorter than the 8-byte header size"});
}

TEST_F(SafetensorsFormat, RefusesAbsurdHeaderSizes) {
  expect_refused(with_header_length(200'000'000, "{}"), {"header size 200000000", "limit"});
  expect_refused(with_header_length(~uint64_t{0}, "{}"), {"limit"});
  expect_refused(with_header_length(64, "{}      "), {"header size 64", "past the end of the file (16 bytes)"});
}

TEST_F(SafetensorsFormat, RefusesBadJson) {
  expect_refused(craft(R"({"a":{"dtype":"F32",)"), {"not valid JSON"});
  expect_refused(craft("[1,2]   "), {"must be a JSON object"});
  expect_refused(craft(std::string("{\"\xff\xfe\":{}}")), {"not valid JSON"});
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}})"), {"nests deeper"});
  expect_refused(craft(R"({"a":5})"), {"tensor 'a'", "must be an object"});
}

TEST_F(SafetensorsFormat, RefusesUnknownDtypesAndMissingFields) {
  expect_refused(craft(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16),
                 {"tensor 'w'", "unknown dtype \"F128\""});
  expect_refused(craft(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), {"tensor 'w'", "missing \"dtype\""});
  expect_refused(craft(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"tensor 'w'", "missing \"shape\""});
  expect_refused(craft(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4),
                 {"tensor 'w'", "data_offsets"});
}

TEST_F(SafetensorsFormat, RefusesBadShapes) {
  expect_refused(craft(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                 {"tensor 'w'", "non-negative integers", "-1"});
  expect_refused(craft(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4), {"tensor 'w'", "2.5"});
  // 2^62 * 2^62 * 4 bytes wraps around a u64: refused, not read as 0 bytes.
  expect_refused(
      craft(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})"),
      {"tensor 'w'", "overflows"});
  expect_refused(craft(R"({"w":{"dtype":"U8","shape":[9223372036854775808,0],"data_offsets":[0,0]}})"),
                 {"tensor 'w'", "too large"});
}

TEST_F(SafetensorsFormat, RefusesShapesThatDisagreeWithTheirBytes) {
  expect_refused(craft(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", 8),
                 {"tensor 'w'", "needs 16 bytes", "hold 8"});
}

TEST_F(SafetensorsFormat, RefusesOffsetsPastTheEnd) {
  expect_refused(craft(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                 {"tensor 'w'", "run past the end of the file (8 data bytes)"});
  expect_refused(
      craft(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,18446744073709551616]}})", 4),
      {"tensor 'w'"});
}

TEST_F(SafetensorsFormat, RefusesOverlapsGapsAndReversedRanges) {
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12),
                 {"tensor 'b'", "overlap", "tensor 'a'"});
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                       12),
                 {"tensor 'b'", "gap of 4 bytes", "tensor 'a'"});
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                 {"tensor 'a'", "gap of 4 bytes after the start of the data"});
  expect_refused(craft(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", 8), {"tensor 'a'", "end before"});
}

TEST_F(SafetensorsFormat, RefusesTrailingBytesAndDuplicates) {
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12),
                 {"cover 4 data bytes but the file holds 12"});
  expect_refused(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                       4),
                 {"'a' appears twice"});
}

TEST_F(SafetensorsFormat, RefusesBadMetadata) {
  expect_refused(craft(R"({"__metadata__":{"format":1}})"), {"\"__metadata__\" entry 'format' must be a string"});
  expect_refused(craft(R"({"__metadata__":["pt"]})"), {"\"__metadata__\" must be an object"});
  // null metadata is what Python's reader accepts as "none".
  auto header = st::parse_file_header(craft(R"({"__metadata__":null})"), "m");
  EXPECT_TRUE(header.metadata.empty());
}

TEST_F(SafetensorsFormat, WriterRefusesWhatReadersWouldRefuse) {
  auto t = torch::zeros({1});
  EXPECT_THROW(st::save({{"__metadata__", t}}), std::invalid_argument);
  EXPECT_THROW(st::save({{"a", t}, {"a", t}}), std::invalid_argument);
  EXPECT_THROW(st::save({{"bad\xff", t}}), std::invalid_argument);
  EXPECT_THROW(st::save({{"a", torch::zeros({1}, torch::kComplexDouble)}}), std::invalid_argument);
  EXPECT_THROW(st::save({{"a", torch::Tensor()}}), std::invalid_argument);
  EXPECT_THROW(st::save({{"a", torch::zeros({2}).to_sparse()}}), std::invalid_argument);
}

TEST_F(SafetensorsFormat, EscapesNamesLikePython) {
  auto header = st::plan_layout({{"q\"\\\n\x01é", st::Dtype::U8, {0}}});
  std::string bytes = st::serialize_header(header);
  EXPECT_NE(bytes.find(R"("q\"\\\n\u0001é")"), std::string::npos) << bytes;
  auto parsed = st::parse_file_header(bytes, "escape");
  ASSERT_EQ(parsed.tensors.size(), 1u);
  EXPECT_EQ(parsed.tensors[0].name, "q\"\\\n\x01é");
}

}  // namespace
