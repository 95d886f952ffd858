#pragma once
// Where this process sits in the job: its rank, how many there are, which
// node it is on and where the rendezvous is. Read from the variables the
// usual launchers set, in this order of precedence:
//   1. RANK / WORLD_SIZE (+ LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
//      GROUP_WORLD_SIZE): `accel launch`, torchrun, `accelerate launch`;
//   2. OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE: Open MPI's mpirun;
//   3. PMI_RANK / PMI_SIZE (+ MPI_LOCALRANKID / MPI_LOCALNRANKS): MPICH, Intel MPI;
//   4. SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NODEID: srun.
// With none of them set, the process is alone (world size 1) and needs no
// network. MASTER_ADDR / MASTER_PORT name the rendezvous in every style
// (Slurm falls back to the first host of SLURM_JOB_NODELIST).
#include <string>

#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API Topology {
  static constexpr int kDefaultMasterPort = 29500;

  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  int node_rank = 0;
  int num_nodes = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = kDefaultMasterPort;
  /// Which launcher's variables were read: "none", "torchrun", "mpi", "pmi", "slurm".
  std::string source = "none";
  /// torchrun's agent already hosts the rendezvous store at MASTER_PORT
  /// (TORCHELASTIC_USE_AGENT_STORE=True): every rank, rank 0 too, connects
  /// to it as a client, under the prefix of the attempt
  /// (TORCHELASTIC_RESTART_COUNT), as PyTorch's env:// rendezvous does.
  bool use_agent_store = false;
  int restart_count = 0;

  bool is_distributed() const { return world_size > 1; }
  bool is_main_process() const { return rank == 0; }
  bool is_local_main_process() const { return local_rank == 0; }

  /// Reads the environment (see the header comment); throws
  /// std::invalid_argument naming the variable when a value is malformed or
  /// inconsistent (rank >= world size, negative sizes, ...).
  static Topology from_env(const EnvLookup& env = process_env());
};

/// First host of a Slurm host list: "node[03-05,7],gpu1" -> "node03".
ACCEL_API std::string first_slurm_host(const std::string& nodelist);

}  // namespace accel
