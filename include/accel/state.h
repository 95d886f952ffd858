#pragma once
// The process runtime: one object per process that knows the topology, the
// device, the backend and the process group. Accelerate calls it
// PartialState; here it is accel::ProcessState.
//
// It is created on first use from the environment (see dist/topology.h),
// or explicitly with accel::ProcessState::init(options) before that. A
// single process (no launcher variables) needs no network and no group.
#include <chrono>
#include <optional>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/types.h>

#include "accel/dist/process_group.h"
#include "accel/dist/topology.h"
#include "accel/state_options.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API ProcessState {
 public:
  /// Creates the process state (rendezvous included when distributed).
  /// Throws std::logic_error if it already exists: configure it once, first.
  static ProcessState& init(StateOptions options = {});
  /// The process state, created from the environment on first use.
  static ProcessState& get();
  static bool initialized();
  /// Shuts the process group down and forgets the state (also run at exit).
  static void shutdown();

  const Topology& topology() const { return topology_; }
  int rank() const { return topology_.rank; }
  int world_size() const { return topology_.world_size; }
  int local_rank() const { return topology_.local_rank; }
  int local_world_size() const { return topology_.local_world_size; }
  int node_rank() const { return topology_.node_rank; }
  int num_nodes() const { return topology_.num_nodes; }
  bool is_main_process() const { return topology_.rank == 0; }
  bool is_local_main_process() const { return topology_.local_rank == 0; }
  bool is_last_process() const { return topology_.rank == topology_.world_size - 1; }
  bool distributed() const { return topology_.world_size > 1; }
  torch::Device device() const { return device_; }
  Backend backend() const { return backend_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// The group of all ranks; null in a single process.
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const { return process_group_; }
  /// The rendezvous store; null in a single process.
  const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }

  ~ProcessState();
  ProcessState(const ProcessState&) = delete;
  ProcessState& operator=(const ProcessState&) = delete;

 private:
  explicit ProcessState(StateOptions options);

  Topology topology_;
  torch::Device device_{torch::kCPU};
  Backend backend_ = Backend::gloo;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> process_group_;
};

/// Shorthand for ProcessState::get().
inline ProcessState& state() { return ProcessState::get(); }

/// The device this process should use given the topology: CUDA device
/// local_rank when CUDA is present and `cpu` is false, else the CPU.
/// Throws naming local rank and device count when there are too few GPUs.
ACCEL_API torch::Device choose_device(const Topology& topology, bool cpu);

}  // namespace accel
