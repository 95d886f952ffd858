// The pieces of TensorBoard's event files, each against an independent
// value: CRC-32C against published check values, the protobuf encoding
// against bytes worked out by hand from the wire format, the record framing
// by reading it back, the histogram against a direct count. (That TensorBoard
// itself reads the files is tests/peer/tensorboard_peer_test.cpp.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

#include "accel/tracking/protobuf_writer.h"
#include "accel/tracking/record_writer.h"
#include "accel/tracking/tensorboard_events.h"
#include "accel/util/crc32c.h"
#include "support/errors.h"

namespace {

using accel::testing::expect_error;

TEST(Crc32c, PublishedCheckValues) {
  // "123456789" is the check value every CRC catalogue lists for CRC-32C;
  // 32 zero bytes is RFC 3720's (iSCSI) first test vector.
  EXPECT_EQ(accel::crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(accel::crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(accel::crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  // Continuing from a CRC equals one pass over the whole.
  EXPECT_EQ(accel::crc32c("56789", accel::crc32c("1234")), accel::crc32c("123456789"));
  // The mask: rotate right by 15, add 0xa282ead8.
  const uint32_t crc = accel::crc32c("123456789");
  EXPECT_EQ(accel::masked_crc32c("123456789"), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(ProtobufWriter, WireFormatByHand) {
  accel::ProtobufWriter w;
  w.varint(1, 150);  // the protobuf documentation's example: 08 96 01
  EXPECT_EQ(w.data(), std::string("\x08\x96\x01", 3));
  accel::ProtobufWriter s;
  s.string(2, "testing");  // 12 07 "testing"
  EXPECT_EQ(s.data(), std::string("\x12\x07testing", 9));
  accel::ProtobufWriter negative;
  negative.int64(2, -1);  // int64 -1 is ten bytes of varint
  EXPECT_EQ(negative.data(), std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));
  accel::ProtobufWriter f;
  f.float32(2, 1.0f);  // key 0x15, then 1.0f little-endian
  EXPECT_EQ(f.data(), std::string("\x15\x00\x00\x80\x3f", 5));
  accel::ProtobufWriter d;
  d.float64(1, 2.0);  // key 0x09
  EXPECT_EQ(d.data(), std::string("\x09\x00\x00\x00\x00\x00\x00\x00\x40", 9));
  accel::ProtobufWriter outer;
  outer.message(3, s);  // 1a 09 <s>
  EXPECT_EQ(outer.data(), std::string("\x1a\x09", 2) + s.data());
  accel::ProtobufWriter packed;
  packed.packed_float64(6, std::vector<double>{1.0, 2.0});  // 32 10 <16 bytes>
  EXPECT_EQ(packed.data().substr(0, 2), std::string("\x32\x10", 2));
  EXPECT_EQ(packed.data().size(), 18u);
}

TEST(RecordWriter, FramesEachRecordWithLengthAndMaskedCrcs) {
  const std::string data = "an event";
  const std::string framed = accel::frame_record(data);
  ASSERT_EQ(framed.size(), 8 + 4 + data.size() + 4);
  uint64_t length;
  std::memcpy(&length, framed.data(), 8);
  EXPECT_EQ(length, data.size());
  uint32_t length_crc, data_crc;
  std::memcpy(&length_crc, framed.data() + 8, 4);
  std::memcpy(&data_crc, framed.data() + 12 + data.size(), 4);
  EXPECT_EQ(length_crc, accel::masked_crc32c(framed.substr(0, 8)));
  EXPECT_EQ(framed.substr(12, data.size()), data);
  EXPECT_EQ(data_crc, accel::masked_crc32c(data));
}

TEST(RecordWriter, WritesFromItsThreadAndReportsAFolderThatIsNotThere) {
  const auto path = std::filesystem::temp_directory_path() / ("accel_records_" + std::to_string(::getpid()));
  {
    accel::RecordWriter writer(path);
    for (int i = 0; i < 1000; ++i) writer.write("record " + std::to_string(i));
    writer.flush();
    std::string expected;
    for (int i = 0; i < 1000; ++i) expected += accel::frame_record("record " + std::to_string(i));
    std::ifstream in(path, std::ios::binary);
    const std::string written((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(written, expected);
  }
  std::filesystem::remove(path);
  expect_error<std::runtime_error>([] { accel::RecordWriter("/nonexistent-folder/events"); },
                                   {"/nonexistent-folder/events", "No such file"});
}

TEST(TensorBoardHistogram, BucketsCountEveryFiniteValueBetweenTorchsEdges) {
  std::vector<double> values = {-3.5, -1, 0, 0, 0.5, 1, 2, 2.25, 100, 1e-13};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto with_non_finite = values;
  with_non_finite.insert(with_non_finite.end(), {nan, inf, -inf});
  const auto h = accel::tensorboard::make_histogram("w", with_non_finite);
  EXPECT_EQ(h.num, values.size());  // non-finite values left out
  EXPECT_EQ(h.min, -3.5);
  EXPECT_EQ(h.max, 100);
  double sum = 0, squares = 0;
  for (double v : values) sum += v, squares += v * v;
  EXPECT_DOUBLE_EQ(h.sum, sum);
  EXPECT_DOUBLE_EQ(h.sum_squares, squares);
  ASSERT_EQ(h.bucket.size(), h.bucket_limit.size());
  EXPECT_EQ(h.bucket.front(), 0);  // the empty bucket that shows the left edge
  // Each value lies in the bucket whose range (previous limit, limit] holds it
  // in numpy's half-open sense: count directly.
  double total = 0;
  for (size_t i = 1; i < h.bucket.size(); ++i) {
    double expected = 0;
    for (double v : values) expected += (v >= h.bucket_limit[i - 1] && v < h.bucket_limit[i]);
    EXPECT_EQ(h.bucket[i], expected) << "bucket " << i << " up to " << h.bucket_limit[i];
    total += h.bucket[i];
  }
  EXPECT_EQ(total, values.size());
  for (size_t i = 1; i < h.bucket_limit.size(); ++i) EXPECT_LT(h.bucket_limit[i - 1], h.bucket_limit[i]);
  // Edges are torch's: 0 and ±1e-12 * 1.1^k.
  EXPECT_LE(h.bucket_limit.front(), -3.5);
  EXPECT_GT(h.bucket_limit.back(), 100);
  EXPECT_LT(h.bucket_limit.back(), 110.0001);

  expect_error<std::invalid_argument>(
      [&] {
        accel::tensorboard::make_histogram("w", {nan, inf});
      },
      {"\"w\"", "no finite value"});
}

}  // namespace
