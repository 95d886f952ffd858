#include "accel/data/batch_sampler_shard.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {
namespace {

Indices slice(const Indices& v, int64_t begin, int64_t end) {
  const int64_t n = static_cast<int64_t>(v.size());
  begin = std::min(begin, n);
  end = std::max(begin, std::min(end, n));
  return Indices(v.begin() + begin, v.begin() + end);
}

}  // namespace

BatchSamplerShard::BatchSamplerShard(std::shared_ptr<BatchSamplerBase> batch_sampler, int num_processes,
                                     int process_index, bool split_batches, bool even_batches)
    : inner_(std::move(batch_sampler)),
      num_processes_(num_processes),
      process_index_(process_index),
      split_batches_(split_batches),
      even_batches_(even_batches) {
  ACCEL_CHECK_ARG(inner_, "BatchSamplerShard: the batch sampler is null, expected one");
  ACCEL_CHECK_ARG(num_processes >= 1, "BatchSamplerShard: num_processes ", num_processes, " must be >= 1");
  ACCEL_CHECK_ARG(process_index >= 0 && process_index < num_processes, "BatchSamplerShard: process_index ",
                  process_index, " must be in [0, ", num_processes, ")");
  if (split_batches) {
    auto bs = inner_->batch_size();
    ACCEL_CHECK_ARG(bs && *bs % num_processes == 0, "BatchSamplerShard: with split_batches the batch size (",
                    bs ? std::to_string(*bs) : std::string("none"), ") must be a multiple of num_processes (",
                    num_processes, ")");
  }
}

int64_t BatchSamplerShard::size() const {
  const int64_t total = inner_->size(), p = num_processes_;
  if (split_batches_ || total % p == 0) return split_batches_ ? total : total / p;
  const int64_t rounds = total / p;
  if (inner_->drop_last()) return rounds;
  if (even_batches_) return rounds + 1;
  return process_index_ < total % p ? rounds + 1 : rounds;
}

IndexBatches BatchSamplerShard::batches(int64_t epoch) const {
  const IndexBatches all = inner_->batches(epoch);
  return split_batches_ ? split(all) : round_robin(all);
}

IndexBatches BatchSamplerShard::split(const IndexBatches& all) const {
  IndexBatches out;
  if (all.empty()) return out;
  const int64_t bs = *inner_->batch_size(), piece = bs / num_processes_;
  const int64_t begin = piece * process_index_, end = begin + piece;
  for (const auto& b : all)
    if (static_cast<int64_t>(b.size()) == bs) out.push_back(slice(b, begin, end));
  const Indices& last = all.back();
  if (inner_->drop_last() || static_cast<int64_t>(last.size()) >= bs) return out;
  if (!even_batches_) {
    // Only the ranks the short batch reaches get a (possibly shorter) piece.
    if (static_cast<int64_t>(last.size()) > begin) out.push_back(slice(last, begin, end));
    return out;
  }
  // Complete the short batch with the start of the first batch, repeated
  // when the whole epoch is smaller than one batch.
  Indices filler = all.front();
  while (static_cast<int64_t>(filler.size()) < bs) filler.insert(filler.end(), filler.begin(), filler.end());
  Indices completed = last;
  completed.insert(completed.end(), filler.begin(), filler.end());
  out.push_back(slice(completed, begin, end));
  return out;
}

IndexBatches BatchSamplerShard::round_robin(const IndexBatches& all) const {
  const int64_t p = num_processes_, me = process_index_, n = static_cast<int64_t>(all.size());
  const auto bs = inner_->batch_size();
  auto full = [&](const Indices& b) { return !bs || static_cast<int64_t>(b.size()) == *bs; };

  IndexBatches out;
  // A round is yielded when its last batch arrives full; until then this
  // rank's batch of the round waits here.
  std::optional<Indices> mine;
  for (int64_t i = 0; i < n; ++i) {
    if (i % p == me) mine = all[i];
    if (i % p == p - 1 && full(all[i])) {
      out.push_back(std::move(*mine));
      mine.reset();
    }
  }
  if (inner_->drop_last() || n == 0) return out;
  if (!even_batches_) {
    if (mine) out.push_back(std::move(*mine));
    return out;
  }
  if (mine && full(*mine)) out.push_back(*mine);

  // Complete the last round from the first `p` batches of the epoch (as a
  // flat index list, or whole batches when batches have no fixed size),
  // repeated while shorter than a round.
  IndexBatches first_batches(all.begin(), all.begin() + std::min(n, p));
  Indices flat;
  for (const auto& b : first_batches) flat.insert(flat.end(), b.begin(), b.end());
  if (bs) {
    while (static_cast<int64_t>(flat.size()) < p * *bs) flat.insert(flat.end(), flat.begin(), flat.end());
  } else {
    while (static_cast<int64_t>(first_batches.size()) < p) {
      const auto copy = first_batches;
      first_batches.insert(first_batches.end(), copy.begin(), copy.end());
    }
  }

  int64_t i = n - 1;
  Indices batch = all.back();
  if (full(batch)) {
    batch.clear();
    ++i;
  }
  size_t cursor = 0;
  while (i % p != 0 || !batch.empty()) {
    if (!bs) {
      batch = first_batches[cursor++];
    } else {
      const size_t want = static_cast<size_t>(*bs) - batch.size();
      const size_t end = std::min(flat.size(), cursor + want);
      batch.insert(batch.end(), flat.begin() + cursor, flat.begin() + end);
      cursor = end;
    }
    if (i % p == me) out.push_back(batch);
    batch.clear();
    ++i;
  }
  return out;
}

}  // namespace accel
