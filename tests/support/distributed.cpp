#include "support/distributed.h"

#include <mutex>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>

#include "accel/dist/collectives.h"
#include "accel/state.h"

namespace accel::testing {

void run_distributed(int n, const std::function<void()>& body, LaunchOptions options) {
  options.num_processes = n;
  auto result = launch_processes(
      [&] {
        body();
        if (::testing::Test::HasFailure()) throw std::runtime_error("a test assertion failed in this rank");
        // Rank 0 hosts the rendezvous store: had it finished first (a body
        // with no collective after the group was built), a rank still
        // connecting its Gloo pairs through the store would lose it.
        if (ProcessState::initialized() && ProcessState::get().distributed()) wait_for_everyone();
      },
      options);
  EXPECT_TRUE(result.ok()) << result.describe();
}

void seed_cpu(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

void expect_ranks_agree(const std::vector<torch::Tensor>& tensors, std::source_location where) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    // One row per rank: any difference between neighbouring rows.
    const float spread = gather(tensors[i].reshape({1, -1})).diff(1, 0).abs().max().item<float>();
    if (spread != 0.0f)
      ADD_FAILURE_AT(where.file_name(), where.line()) << "tensor " << i << " differs across ranks by " << spread;
  }
}

}  // namespace accel::testing
