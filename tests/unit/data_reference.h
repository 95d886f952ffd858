#pragma once
// Test-only reference for Accelerate's sharding rules, written from the
// global view ("extend the epoch's index stream by cycling its start, cut
// it into global batches, hand slices to ranks") rather than the streaming
// form the library follows, so the two can disagree if either is wrong.
#include <cstdint>
#include <vector>

namespace accel::testing {

using Rows = std::vector<int64_t>;
using RowBatches = std::vector<Rows>;

// `stream` extended to `length` by cycling its first `head` items.
inline Rows cycle_extend(const Rows& stream, int64_t head, int64_t length) {
  Rows out = stream;
  const int64_t h = std::min<int64_t>(head, stream.size());
  for (int64_t i = 0; static_cast<int64_t>(out.size()) < length; ++i) out.push_back(stream[i % h]);
  return out;
}

inline RowBatches chunk(const Rows& s, int64_t size) {
  RowBatches out;
  for (size_t b = 0; b < s.size(); b += size)
    out.emplace_back(s.begin() + b, s.begin() + std::min(s.size(), b + static_cast<size_t>(size)));
  return out;
}

inline Rows cut(const Rows& v, int64_t begin, int64_t end) {
  begin = std::min<int64_t>(begin, v.size());
  end = std::max(begin, std::min<int64_t>(end, v.size()));
  return Rows(v.begin() + begin, v.begin() + end);
}

// BatchSamplerShard over `order` with a fixed batch size.
inline RowBatches expected_batch_shard(const Rows& order, int64_t bs, bool drop_last, int P, int p, bool split,
                                       bool even) {
  const int64_t n = order.size();
  RowBatches out;
  if (n == 0) return out;
  if (split) {
    const int64_t piece = bs / P;
    Rows s = order;
    if (drop_last)
      s.resize(n / bs * bs);
    else if (even)
      s = cycle_extend(order, bs, (n + bs - 1) / bs * bs);
    for (auto& b : chunk(s, bs)) {
      if (static_cast<int64_t>(b.size()) <= piece * p) continue;  // short, without even: not for this rank
      out.push_back(cut(b, piece * p, piece * (p + 1)));
    }
    return out;
  }
  const int64_t g = bs * P;
  RowBatches all;
  if (drop_last)
    all = chunk(cut(order, 0, n / g * g), bs);
  else if (even)
    all = chunk(cycle_extend(order, g, (n + g - 1) / g * g), bs);
  else
    all = chunk(order, bs);
  for (size_t k = p; k < all.size(); k += P) out.push_back(all[k]);
  return out;
}

// IterableDatasetShard over a stream 0..n-1: this rank's examples.
inline Rows expected_iterable_shard(int64_t n, int64_t bs, bool drop_last, int P, int p, bool split) {
  const int64_t g = split ? bs : bs * P, mine = g / P;
  Rows s;
  for (int64_t i = 0; i < n; ++i) s.push_back(i);
  if (drop_last)
    s.resize(n / g * g);
  else if (n > 0)
    s = cycle_extend(s, g, (n + g - 1) / g * g);
  Rows out;
  for (int64_t b = 0; b < static_cast<int64_t>(s.size()); b += g)
    for (int64_t i = b + p * mine; i < b + (p + 1) * mine; ++i) out.push_back(s[i]);
  return out;
}

}  // namespace accel::testing
