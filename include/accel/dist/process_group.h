#pragma once
// Rendezvous and process groups, on LibTorch's own engines: a c10d::TCPStore
// at MASTER_ADDR:MASTER_PORT and a c10d::ProcessGroup with Gloo for CPU
// tensors and, on GPUs, NCCL for CUDA tensors.
//
// Every failure to meet (unreachable master, port in use, a rank that never
// arrives) is an accel::RendezvousError naming the address, the rank(s) and
// the timeout, raised within the timeout rather than hanging.
#include <chrono>
#include <stdexcept>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "accel/dist/backend.h"
#include "accel/dist/topology.h"
#include "accel/util/export.h"

namespace accel {

/// Raised when processes cannot meet; what() says where, who and how long.
class ACCEL_API RendezvousError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Connects to (rank 0: hosts) the TCP store and waits until every rank has
/// arrived. Throws RendezvousError naming the missing ranks after `timeout`.
ACCEL_API c10::intrusive_ptr<c10d::Store> connect_store(const Topology& topology, std::chrono::milliseconds timeout);

/// Builds the process group over `store`. Gloo always serves CPU tensors (so
/// object collectives work everywhere); with Backend::nccl, NCCL serves CUDA
/// tensors on `cuda_device` and is the default backend. `name` keys the
/// group's rendezvous in the store; building a second group of the same
/// name in one process keys it apart from the first (members must build
/// their groups of one name in the same order).
ACCEL_API c10::intrusive_ptr<c10d::ProcessGroup> new_process_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                                   const Topology& topology, Backend backend,
                                                                   std::chrono::milliseconds timeout,
                                                                   int cuda_device = -1,
                                                                   const std::string& name = "default_pg");

}  // namespace accel
