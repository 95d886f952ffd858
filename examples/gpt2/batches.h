#pragma once
// Batches for next-token prediction: `inputs` are [batch, seq] tokens and
// `targets` the same windows shifted one token ahead. Two sources:
//   - random tokens below vocab_size (the benchmark's input: no tokenizer,
//     no files, every implementation sees the same kind of work);
//   - the bytes of a text file as tokens 0..255 (something a tiny model
//     visibly learns on a CPU, e.g. the repository's README.md).
// Each process draws its own windows (seed + process index), as a data
// loader sharded across ranks would give it its own samples.
#include <cstdint>
#include <filesystem>

#include <torch/types.h>

namespace gpt2 {

struct TokenBatch {
  torch::Tensor inputs;   // [batch, seq] int64
  torch::Tensor targets;  // [batch, seq] int64
};

class TokenBatches {
 public:
  /// Uniform random tokens in [0, vocab_size).
  static TokenBatches random(int64_t vocab_size, uint64_t seed);
  /// Random windows of the file's bytes. Throws std::runtime_error naming
  /// the file when it cannot be read or is empty.
  static TokenBatches from_text(const std::filesystem::path& file, uint64_t seed);

  /// The number of distinct token values the source produces: a model's
  /// vocab_size must be at least this.
  int64_t vocab_needed() const { return vocab_; }

  /// The next batch, drawn on the CPU and moved to `device`. Throws
  /// std::invalid_argument when a text is too short for `seq` + 1 tokens.
  TokenBatch next(int64_t batch, int64_t seq, torch::Device device);

 private:
  TokenBatches(torch::Tensor text, int64_t vocab, uint64_t seed);
  torch::Tensor text_;  // int64 tokens; undefined for random tokens
  int64_t vocab_;
  at::Generator generator_;
};

}  // namespace gpt2
