#pragma once
// prepare_data_loader: a loader turned into this rank's share of it, as
// Accelerate's prepare_data_loader does (the Accelerator's prepare() calls
// it). Map-style datasets get a BatchSamplerShard, iterable ones an
// IterableDatasetShard, or, with dispatch_batches (the default for
// iterable datasets on several ranks), rank 0 reads and scatters.
//
// The shuffle seed is the same on every rank: `seed` when given, else rank
// 0's seed is broadcast (Accelerate synchronises the sampler's generator).
#include <optional>
#include <stdexcept>
#include <string>

#include <torch/arg.h>

#include "accel/data/data_loader.h"
#include "accel/dist/collectives.h"
#include "accel/state.h"
#include "accel/util/check.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API PrepareOptions {
  /// Unset: the process state's world size and rank.
  TORCH_ARG(std::optional<int>, num_processes) = std::nullopt;
  TORCH_ARG(std::optional<int>, process_index) = std::nullopt;
  /// Cut each batch into num_processes pieces instead of giving each rank
  /// whole batches (the batch size must then be a multiple of the ranks).
  TORCH_ARG(bool, split_batches) = false;
  /// Complete the last round from the start so all ranks get as many
  /// batches (map-style datasets).
  TORCH_ARG(bool, even_batches) = true;
  /// Rank 0 reads, the others receive. Unset: on for iterable datasets when
  /// there are several ranks, as in Accelerate.
  TORCH_ARG(std::optional<bool>, dispatch_batches) = std::nullopt;
  /// Where batches arrive; unset: where the collate function put them.
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  /// Asynchronous host-to-device copies (pair with pin_memory).
  TORCH_ARG(bool, non_blocking) = false;
  /// The shuffle seed for every rank (Accelerate's data_seed).
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;
  /// Every process of the job prepares this loader at the same point (the
  /// Accelerator's prepare does), so the shuffle seed is agreed over the
  /// whole job even when num_processes counts only a mesh's data-parallel
  /// ranks.
  TORCH_ARG(bool, every_process_prepares) = false;
};

namespace detail {
/// World size and rank: from the options, else from the process state.
ACCEL_API std::pair<int, int> resolve_ranks(const PrepareOptions& options);
/// Rank 0's seed on every rank when running distributed and every process
/// calls (num_processes is the job's, or `every_process`), else `seed`.
ACCEL_API uint64_t agree_on_seed(uint64_t seed, int num_processes, bool every_process = false);
}  // namespace detail

template <class Batch>
DataLoader<Batch> prepare_data_loader(const DataLoader<Batch>& loader, const PrepareOptions& options = {}) {
  const auto [world, rank] = detail::resolve_ranks(options);
  const auto& source = loader.source();
  const bool dispatch = options.dispatch_batches().value_or(source->iterable() && world > 1);
  const int64_t batch_size = source->batch_size();
  ACCEL_CHECK_ARG(!(options.split_batches() && world > 1 && (batch_size < 1 || batch_size % world != 0)),
                  "prepare_data_loader: with split_batches the batch size (",
                  batch_size < 1 ? std::string("varying") : std::to_string(batch_size),
                  ") must be a multiple of the number of processes (", world, ")");

  if (auto sampler = source->sampler(); sampler && sampler->seed())
    sampler->set_seed(options.seed()
                          ? *options.seed()
                          : detail::agree_on_seed(*sampler->seed(), world, options.every_process_prepares()));

  typename DataLoader<Batch>::Distribution d;
  d.source = source;
  d.total_batch_size = batch_size > 0 ? (options.split_batches() ? batch_size : batch_size * world) : -1;
  d.total_length = source->dataset_size();
  d.device = options.device();
  d.non_blocking = options.non_blocking();
  if (dispatch) {
    if constexpr (!TensorBatch<Batch>) {
      fail<std::invalid_argument>("prepare_data_loader: dispatch_batches needs a batch of tensors (BatchTraits)");
    }
    auto& st = ProcessState::get();
    ACCEL_CHECK_ARG(world <= 1 || (st.world_size() == world && st.rank() == rank),
                    "prepare_data_loader: dispatch_batches runs collectives over the process group, "
                    "so num_processes/process_index (",
                    world, "/", rank, ") must be the group's (", st.world_size(), "/", st.rank(), ")");
    d.dispatch = detail::DispatchSpec{world, rank, options.split_batches()};
  } else if (world > 1) {
    d.source = source->shard(detail::ShardSpec{world, rank, options.split_batches(), options.even_batches()});
  }
  DataLoader<Batch> out(loader);
  out.distribute(std::move(d));
  return out;
}

/// A copy of `loader` whose next pass starts after its first `num_batches`
/// batches (later passes are whole). Accelerate's skip_first_batches; a
/// resumed loader's load_state does the same from a saved state.
template <class Batch>
DataLoader<Batch> skip_first_batches(const DataLoader<Batch>& loader, int64_t num_batches) {
  DataLoader<Batch> out(loader);
  out.skip_next(num_batches);
  return out;
}

}  // namespace accel
