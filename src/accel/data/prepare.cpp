#include "accel/data/prepare.h"

#include "accel/util/check.h"

namespace accel::detail {

std::pair<int, int> resolve_ranks(const PrepareOptions& options) {
  int world = 1, rank = 0;
  if (!options.num_processes() || !options.process_index()) {
    auto& st = ProcessState::get();
    world = st.world_size();
    rank = st.rank();
  }
  if (options.num_processes()) world = *options.num_processes();
  if (options.process_index()) rank = *options.process_index();
  ACCEL_CHECK_ARG(world >= 1, "prepare_data_loader: num_processes ", world, " must be >= 1");
  ACCEL_CHECK_ARG(rank >= 0 && rank < world, "prepare_data_loader: process_index ", rank, " must be in [0, ", world,
                  ")");
  return {world, rank};
}

uint64_t agree_on_seed(uint64_t seed, int num_processes, bool every_process) {
  auto& st = ProcessState::get();
  if (!st.distributed() || (st.world_size() != num_processes && !every_process)) return seed;
  const std::string mine = std::to_string(seed);
  return std::stoull(broadcast_object(mine, 0));
}

}  // namespace accel::detail
