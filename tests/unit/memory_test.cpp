// find_executable_batch_size: Accelerate's retry rule (x0.9, truncated, until
// a call succeeds or the size reaches 0), checked against the sequence
// computed here by hand.
#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include "accel/util/memory.h"
#include "support/errors.h"

using accel::find_executable_batch_size;
using accel::testing::error_of;

namespace {
[[noreturn]] void out_of_memory(int64_t batch) {
  TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory. Tried to allocate ", batch, " MiB");
  throw;  // not reached
}
}  // namespace

TEST(FindExecutableBatchSize, ShrinksByATenthUntilItFits) {
  std::vector<int64_t> tried;
  auto result = find_executable_batch_size(
      [&](int64_t batch) {
        tried.push_back(batch);
        if (batch > 20) out_of_memory(batch);
        return batch * 10;
      },
      128);
  std::vector<int64_t> want;
  for (int64_t b = 128;; b = static_cast<int64_t>(b * 0.9)) {
    want.push_back(b);
    if (b <= 20) break;
  }
  EXPECT_EQ(tried, want);
  EXPECT_EQ(want.back(), 19);
  EXPECT_EQ(result, 190);
}

TEST(FindExecutableBatchSize, CpuAllocatorFailureAndCustomReduction) {
  std::vector<int64_t> tried;
  find_executable_batch_size(
      [&](int64_t batch) {
        tried.push_back(batch);
        if (batch > 8) throw c10::Error("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes");
      },
      64, [](int64_t b) { return b / 2; });
  EXPECT_EQ(tried, (std::vector<int64_t>{64, 32, 16, 8}));
}

TEST(FindExecutableBatchSize, OtherErrorsPassAndZeroGivesUp) {
  EXPECT_THROW(find_executable_batch_size([](int64_t) -> int { throw std::logic_error("shape mismatch"); }, 8),
               std::logic_error);
  EXPECT_EQ(error_of<std::runtime_error>([] { find_executable_batch_size([](int64_t b) { out_of_memory(b); }, 3); }),
            "No executable batch size found, reached zero.");
  EXPECT_THROW(find_executable_batch_size([](int64_t) {}, 0), std::invalid_argument);
}
