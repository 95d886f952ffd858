// Issue 20, unbounded work and ATen stack traces from safetensors headers:
// the header parse is linear in the number of tensors (it was quadratic: a
// 10 MB header of 180k tensors did not open in 120 s), tensors are found by
// name without scanning the header, and a shape whose element count
// overflows is refused by the parser, also when another dimension is 0,
// instead of reaching LibTorch.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "accel/checkpoint/safetensors.h"
#include "support/safetensors_bytes.h"
#include "support/temp_dir.h"

namespace st = accel::safetensors;
using accel::testing::safetensors_bytes;
using accel::testing::TempDir;

namespace {

// A file of `n` one-element F32 tensors, written by hand (8-byte size, JSON, data).
std::string many_tensors(size_t n) {
  std::string json = "{";
  for (size_t i = 0; i < n; ++i) {
    if (i) json += ",";
    json += "\"layer." + std::to_string(i) + ".w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" +
            std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
  }
  json += "}";
  return safetensors_bytes(json, std::string(4 * n, '\0'));
}

double best_parse_seconds(const std::string& bytes, size_t tensors) {
  double best = 1e9;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto header = st::parse_file_header(bytes, "many.safetensors");
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    EXPECT_EQ(header.tensors.size(), tensors);
  }
  return best;
}

TEST(SafetensorsScaling, HeaderParseIsLinearInTheTensors) {
  // Four times the tensors: about four times the time when linear, sixteen
  // when quadratic. The bound leaves room for a noisy machine.
  const std::string small = many_tensors(25'000), large = many_tensors(100'000);
  const double t_small = best_parse_seconds(small, 25'000), t_large = best_parse_seconds(large, 100'000);
  EXPECT_LT(t_large, 9 * t_small + 0.05) << t_small << " s for 25k tensors, " << t_large << " s for 100k";
  EXPECT_LT(t_large, 5.0);  // was minutes
}

TEST(SafetensorsScaling, FileFindsEveryTensorByNameQuickly) {
  const TempDir dir("safetensors");
  const auto path = dir / "many.safetensors";
  std::ofstream(path, std::ios::binary) << many_tensors(100'000);
  const auto t0 = std::chrono::steady_clock::now();
  st::File file(path);
  for (size_t i = 0; i < 100'000; i += 7) EXPECT_EQ(file.info("layer." + std::to_string(i) + ".w").begin, 4 * i);
  EXPECT_TRUE(file.contains("layer.99999.w"));
  EXPECT_FALSE(file.contains("layer.100000.w"));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

// The header of one tensor with `shape` and no data.
std::string one_tensor(const std::string& shape) {
  return safetensors_bytes("{\"t\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,0]}}");
}

std::string refusal(const std::string& bytes) {
  try {
    st::load(bytes);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(SafetensorsScaling, ElementCountsThatOverflowAreRefusedBeforeLibTorch) {
  const std::string p62 = "4611686018427387904";  // 2^62
  for (const std::string& shape :
       std::vector<std::string>{"[0," + p62 + "," + p62 + "]", "[" + p62 + "," + p62 + ",0]", "[" + p62 + ",0,4]",
                                "[0,9223372036854775807,2]", "[3074457345618258603,0,3]"}) {
    const std::string m = refusal(one_tensor(shape));
    EXPECT_NE(m.find("overflows: more elements than a tensor can index"), std::string::npos) << shape << ": " << m;
    EXPECT_EQ(m.find("Exception raised from"), std::string::npos) << m;  // no c10::Error stack trace
  }
  // Empty tensors whose sizes fit are still read.
  EXPECT_EQ(refusal(one_tensor("[0,1024,1024]")), "accepted");
  EXPECT_EQ(refusal(one_tensor("[0]")), "accepted");
}

TEST(SafetensorsScaling, DuplicateNamesAndDeepNestingAreStillRefused) {
  std::string json =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
  EXPECT_NE(refusal(safetensors_bytes(json)).find("'a' appears twice"), std::string::npos);
  EXPECT_NE(refusal(one_tensor(std::string(100'000, '[') + std::string(100'000, ']'))).find("nests deeper"),
            std::string::npos);
}

}  // namespace
