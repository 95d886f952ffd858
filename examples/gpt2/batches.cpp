#include "batches.h"

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "accel/util/check.h"

namespace gpt2 {

TokenBatches::TokenBatches(torch::Tensor text, int64_t vocab, uint64_t seed)
    : text_(std::move(text)), vocab_(vocab), generator_(at::detail::createCPUGenerator(seed)) {}

TokenBatches TokenBatches::random(int64_t vocab_size, uint64_t seed) {
  ACCEL_CHECK_ARG(vocab_size >= 1, "random tokens need vocab_size >= 1, got ", vocab_size);
  return TokenBatches(torch::Tensor(), vocab_size, seed);
}

TokenBatches TokenBatches::from_text(const std::filesystem::path& file, uint64_t seed) {
  std::ifstream in(file, std::ios::binary);
  ACCEL_CHECK(in, "cannot read the text file ", file.string());
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ACCEL_CHECK(!bytes.empty(), "the text file ", file.string(), " is empty: expected some text");
  auto text = torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).to(torch::kLong);
  return TokenBatches(text, 256, seed);
}

TokenBatch TokenBatches::next(int64_t batch, int64_t seq, torch::Device device) {
  torch::Tensor windows;  // [batch, seq + 1]
  if (!text_.defined()) {
    windows = torch::randint(vocab_, {batch, seq + 1}, generator_, torch::kLong);
  } else {
    const int64_t n = text_.size(0);
    ACCEL_CHECK_ARG(n >= seq + 1, "the text has ", n, " bytes, fewer than seq + 1 = ", seq + 1,
                    ": use a shorter --seq or a longer text");
    auto starts = torch::randint(n - seq, {batch, 1}, generator_, torch::kLong);
    windows = text_.index({starts + torch::arange(seq + 1, torch::kLong)});
  }
  windows = windows.to(device);
  using torch::indexing::Slice;
  return {windows.index({Slice(), Slice(0, seq)}), windows.index({Slice(), Slice(1, seq + 1)})};
}

}  // namespace gpt2
