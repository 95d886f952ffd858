#include "accel/dist/process_group.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef ACCEL_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

std::string seconds(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", t.count() / 1000.0);
  return buf;
}

std::string where(const Topology& t) { return t.master_addr + ":" + std::to_string(t.master_port); }

bool is_loopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

// Rank 0 waits for every rank's arrival key and names those that never came;
// the others wait for rank 0's "all here" key.
void wait_for_all_ranks(c10d::Store& store, const Topology& t, std::chrono::milliseconds timeout) {
  const std::string arrived = "accel/arrived/";
  store.set(arrived + std::to_string(t.rank), std::vector<uint8_t>{1});
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (t.rank == 0) {
    std::vector<int> missing;
    for (int r = 0; r < t.world_size; ++r) missing.push_back(r);
    while (!missing.empty()) {
      std::vector<int> still;
      for (int r : missing)
        if (!store.check({arrived + std::to_string(r)})) still.push_back(r);
      missing = std::move(still);
      if (missing.empty()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        std::string names;
        for (size_t i = 0; i < missing.size() && i < 16; ++i) names += (i ? ", " : "") + std::to_string(missing[i]);
        if (missing.size() > 16) names += ", ...";
        fail<RendezvousError>("rendezvous at ", where(t), " timed out after ", seconds(timeout), ": rank(s) ", names,
                              " of world size ", t.world_size,
                              " never arrived (check that every process was started with the same MASTER_ADDR, "
                              "MASTER_PORT and WORLD_SIZE)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    store.set("accel/all_arrived", std::vector<uint8_t>{1});
  } else {
    try {
      store.wait({"accel/all_arrived"}, timeout);
    } catch (const c10::Error&) {
      fail<RendezvousError>("rank ", t.rank, " waited ", seconds(timeout), " at ", where(t),
                            " but not every rank of world size ", t.world_size,
                            " arrived (rank 0 names the missing ones)");
    }
  }
}

}  // namespace

Backend parse_backend(const std::string& name) {
  const std::string n = lower(name);
  if (n == "gloo") return Backend::gloo;
  if (n == "nccl") return Backend::nccl;
  fail<std::invalid_argument>("unknown backend '", name, "': expected 'gloo' or 'nccl'");
}

std::string to_string(Backend backend) { return backend == Backend::gloo ? "gloo" : "nccl"; }

c10::intrusive_ptr<c10d::Store> connect_store(const Topology& t, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(t.master_port);
  // Under torchrun the agent hosts the store on MASTER_PORT: a second
  // server there would fail to bind (and c10d would log it).
  opts.isServer = t.rank == 0 && !t.use_agent_store;
  opts.numWorkers = t.world_size;
  opts.waitWorkers = false;  // we wait ourselves, to name who is missing
  opts.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(t.master_addr, opts);
  } catch (const std::exception& e) {
    std::string first_line = e.what();
    first_line = first_line.substr(0, first_line.find('\n'));
    if (opts.isServer)
      fail<RendezvousError>("rank 0 could not host the rendezvous store at ", where(t),
                            " (is the port already in use?): ", first_line);
    fail<RendezvousError>("rank ", t.rank, " could not reach the rendezvous store at ", where(t), " within ",
                          seconds(timeout), " (is rank 0 running and MASTER_ADDR/MASTER_PORT right?): ", first_line);
  }
  if (t.use_agent_store)
    store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(t.restart_count), store);
  wait_for_all_ranks(*store, t, timeout);
  return store;
}

namespace {

// The store keys of a group's rendezvous live under its name. A second
// group of the same name over the same store (a second Accelerator with
// hybrid sharding in one process) would meet the first one's keys and
// connect to ranks that no longer listen: it hangs. So the k-th group of a
// name in this process is keyed "<name>#k" (the first keeps the bare
// name). Every member builds a group's uses in the same order, so they
// agree on k.
std::string unique_group_key(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, int> uses;
  std::lock_guard<std::mutex> lock(mutex);
  const int k = uses[name]++;
  return k == 0 ? name : name + "#" + std::to_string(k);
}

}  // namespace

c10::intrusive_ptr<c10d::ProcessGroup> new_process_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                         const Topology& t, Backend backend,
                                                         std::chrono::milliseconds timeout, int cuda_device,
                                                         const std::string& name) {
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>(unique_group_key(name), store);
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(prefixed, t.rank, t.world_size);

  auto gloo_opts = c10d::ProcessGroupGloo::Options::create(timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(t.master_addr)) {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", prefixed),
                                                          t.rank, t.world_size, gloo_opts);
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);

  if (backend == Backend::nccl) {
#ifdef ACCEL_WITH_CUDA
    auto nccl_opts = c10::make_intrusive<c10d::ProcessGroupNCCL::Options>();
    nccl_opts->timeout = timeout;
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", prefixed),
                                                            t.rank, t.world_size, nccl_opts);
    if (cuda_device >= 0) nccl->setBoundDeviceId(c10::Device(c10::DeviceType::CUDA, cuda_device));
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
    fail<std::invalid_argument>("backend 'nccl' requested, but this accel was built without CUDA support");
#endif
  }
  return pg;
}

}  // namespace accel
