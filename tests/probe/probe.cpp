// A program built on accel that reports what it sees: started by other
// launchers (torchrun, accelerate launch) in the peer tests. Each rank
// writes "<key>=<value>" lines to $ACCEL_PROBE_OUT.<rank>.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "accel/dist/collectives.h"
#include "accel/state.h"

int main() {
  auto& st = accel::state();
  const char* out_prefix = std::getenv("ACCEL_PROBE_OUT");
  if (!out_prefix) {
    std::cerr << "ACCEL_PROBE_OUT is not set\n";
    return 2;
  }
  auto sum = accel::reduce(torch::tensor({static_cast<float>(st.rank() + 1)}), accel::ReduceOp::sum);
  auto gathered = accel::gather(torch::tensor({static_cast<int64_t>(st.rank())}));
  auto objects = accel::gather_object("rank" + std::to_string(st.rank()));
  accel::wait_for_everyone();
  std::ofstream out(std::string(out_prefix) + "." + std::to_string(st.rank()));
  const auto& t = st.topology();
  out << "rank=" << t.rank << "\nworld_size=" << t.world_size << "\nlocal_rank=" << t.local_rank
      << "\nlocal_world_size=" << t.local_world_size << "\nnode_rank=" << t.node_rank << "\nnum_nodes=" << t.num_nodes
      << "\nsource=" << t.source << "\ndevice=" << st.device() << "\nbackend=" << accel::to_string(st.backend())
      << "\nsum=" << sum.item<float>() << "\ngathered=" << gathered.sum().item<int64_t>()
      << "\nobjects=" << objects.size() << ":" << objects.back() << "\n";
  // A job that goes on after its rendezvous, for tests that watch it.
  if (const char* linger = std::getenv("ACCEL_PROBE_LINGER_MS"))
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(linger)));
  return 0;
}
