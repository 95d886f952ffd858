#include "accel/state.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include "accel/util/check.h"

namespace accel {
namespace {

std::unique_ptr<ProcessState>& instance() {
  static std::unique_ptr<ProcessState> state;
  return state;
}

std::recursive_mutex& instance_mutex() {
  static std::recursive_mutex m;
  return m;
}

void shutdown_at_exit() { ProcessState::shutdown(); }

}  // namespace

torch::Device choose_device(const Topology& topology, bool cpu) {
  if (cpu || !torch::cuda::is_available()) return torch::Device(torch::kCPU);
  auto count = static_cast<int>(torch::cuda::device_count());
  ACCEL_CHECK_ARG(topology.local_rank < count, "local rank ", topology.local_rank, " needs CUDA device ",
                  topology.local_rank, " but only ", count,
                  " are visible (CUDA_VISIBLE_DEVICES); start fewer processes per machine or use the CPU");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(topology.local_rank));
}

ProcessState::ProcessState(StateOptions options) : timeout_(options.timeout()) {
  topology_ = Topology::from_env(options.env());
  bool cpu = options.cpu().value_or(env_bool(options.env(), "ACCELERATE_USE_CPU").value_or(false));
  device_ = choose_device(topology_, cpu);
  if (device_.is_cuda()) {
    // Make this rank's GPU current so that every allocation and NCCL's
    // communicator land on it, without needing CUDA headers here.
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(device_);
  }
  if (options.backend()) {
    backend_ = *options.backend();
  } else if (auto name = env_string(options.env(), "ACCEL_BACKEND")) {
    backend_ = parse_backend(*name);
  } else {
    backend_ = device_.is_cuda() ? Backend::nccl : Backend::gloo;
  }
  ACCEL_CHECK_ARG(backend_ != Backend::nccl || device_.is_cuda(),
                  "backend 'nccl' needs a CUDA device, but this process runs on the CPU");
  if (topology_.is_distributed()) {
    store_ = connect_store(topology_, timeout_);
    process_group_ = new_process_group(store_, topology_, backend_, timeout_, device_.is_cuda() ? device_.index() : -1);
  }
}

ProcessState::~ProcessState() {
  if (process_group_) {
    try {
      process_group_->shutdown();
    } catch (const std::exception&) {
      // Shutting down after a peer died may fail; the process is ending anyway.
    }
  }
  process_group_.reset();
  store_.reset();
}

ProcessState& ProcessState::init(StateOptions options) {
  std::lock_guard<std::recursive_mutex> lock(instance_mutex());
  ACCEL_CHECK_STATE(
      !instance(),
      "accel::ProcessState::init: the process state already exists; call init once, before anything uses it");
  instance().reset(new ProcessState(std::move(options)));
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(shutdown_at_exit); });
  return *instance();
}

ProcessState& ProcessState::get() {
  std::lock_guard<std::recursive_mutex> lock(instance_mutex());
  if (!instance()) return init();
  return *instance();
}

bool ProcessState::initialized() {
  std::lock_guard<std::recursive_mutex> lock(instance_mutex());
  return instance() != nullptr;
}

void ProcessState::shutdown() {
  std::lock_guard<std::recursive_mutex> lock(instance_mutex());
  instance().reset();
}

}  // namespace accel
