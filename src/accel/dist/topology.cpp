#include "accel/dist/topology.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel {
namespace {

int require_int(const EnvLookup& env, const std::string& name) {
  auto v = env_int(env, name);
  ACCEL_CHECK_ARG(v, "environment variable ", name, " must be set alongside the other rank variables");
  return static_cast<int>(*v);
}

int int_or(const EnvLookup& env, const std::string& name, int fallback) {
  auto v = env_int(env, name);
  return v ? static_cast<int>(*v) : fallback;
}

// Slurm writes tasks per node as "4(x2),3": the first count is ours when
// the job is homogeneous, which is what a training job is.
int slurm_tasks_per_node(const EnvLookup& env, int world_size) {
  if (auto v = env_string(env, "SLURM_NTASKS_PER_NODE"))
    return static_cast<int>(parse_int(*v, "SLURM_NTASKS_PER_NODE"));
  if (auto v = env_string(env, "SLURM_TASKS_PER_NODE")) {
    std::string first = v->substr(0, v->find_first_of("(,"));
    return static_cast<int>(parse_int(first, "SLURM_TASKS_PER_NODE"));
  }
  return world_size;
}

void validate(const Topology& t) {
  auto refuse = [&](const auto&... what) {
    fail<std::invalid_argument>("inconsistent process topology from ", t.source, " variables: ", what...);
  };
  if (t.world_size < 1) refuse("world size ", t.world_size, " must be >= 1");
  if (t.rank < 0 || t.rank >= t.world_size) refuse("rank ", t.rank, " must be in [0, ", t.world_size, ")");
  if (t.local_world_size < 1 || t.local_world_size > t.world_size)
    refuse("local world size ", t.local_world_size, " must be in [1, ", t.world_size, "]");
  if (t.local_rank < 0 || t.local_rank >= t.local_world_size)
    refuse("local rank ", t.local_rank, " must be in [0, ", t.local_world_size, ")");
  if (t.num_nodes < 1 || t.node_rank < 0 || t.node_rank >= t.num_nodes)
    refuse("node rank ", t.node_rank, " must be in [0, ", t.num_nodes, ")");
  if (t.master_port <= 0 || t.master_port > 65535) refuse("MASTER_PORT ", t.master_port, " must be in [1, 65535]");
}

// Node rank and count when the launcher does not say: ranks are laid out
// node by node, local_world_size per node.
void derive_nodes(Topology& t) {
  t.node_rank = t.rank / t.local_world_size;
  t.num_nodes = (t.world_size + t.local_world_size - 1) / t.local_world_size;
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  std::string first = nodelist;
  // Cut at the first comma that is not inside brackets.
  int depth = 0;
  for (size_t i = 0; i < nodelist.size(); ++i) {
    char c = nodelist[i];
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) {
      first = nodelist.substr(0, i);
      break;
    }
  }
  auto open = first.find('[');
  if (open == std::string::npos) return first;
  std::string prefix = first.substr(0, open);
  std::string range = first.substr(open + 1, first.find(']') - open - 1);
  std::string lo = range.substr(0, range.find_first_of("-,"));
  return prefix + lo;
}

Topology Topology::from_env(const EnvLookup& env) {
  Topology t;
  if (env_string(env, "RANK") || env_string(env, "WORLD_SIZE")) {
    t.source = "torchrun";
    t.rank = require_int(env, "RANK");
    t.world_size = require_int(env, "WORLD_SIZE");
    t.local_rank = int_or(env, "LOCAL_RANK", t.rank);
    t.local_world_size = int_or(env, "LOCAL_WORLD_SIZE", t.world_size);
    derive_nodes(t);
    t.node_rank = int_or(env, "GROUP_RANK", t.node_rank);
    t.num_nodes = int_or(env, "GROUP_WORLD_SIZE", t.num_nodes);
    t.use_agent_store = env_string(env, "TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    t.restart_count = int_or(env, "TORCHELASTIC_RESTART_COUNT", 0);
  } else if (env_string(env, "OMPI_COMM_WORLD_RANK")) {
    t.source = "mpi";
    t.rank = require_int(env, "OMPI_COMM_WORLD_RANK");
    t.world_size = require_int(env, "OMPI_COMM_WORLD_SIZE");
    t.local_rank = int_or(env, "OMPI_COMM_WORLD_LOCAL_RANK", t.rank);
    t.local_world_size = int_or(env, "OMPI_COMM_WORLD_LOCAL_SIZE", t.world_size);
    // Not OMPI_COMM_WORLD_NODE_RANK: that is the process's rank among those
    // on its node (the local rank again), not the node's index. mpirun maps
    // ranks node by node, so the index follows from the local size.
    derive_nodes(t);
  } else if (env_string(env, "PMI_RANK")) {
    t.source = "pmi";
    t.rank = require_int(env, "PMI_RANK");
    t.world_size = require_int(env, "PMI_SIZE");
    t.local_rank = int_or(env, "MPI_LOCALRANKID", t.rank);
    t.local_world_size = int_or(env, "MPI_LOCALNRANKS", t.world_size);
    derive_nodes(t);
  } else if (env_string(env, "SLURM_PROCID")) {
    t.source = "slurm";
    t.rank = require_int(env, "SLURM_PROCID");
    t.world_size = require_int(env, "SLURM_NTASKS");
    t.local_rank = int_or(env, "SLURM_LOCALID", 0);
    t.local_world_size = slurm_tasks_per_node(env, t.world_size);
    derive_nodes(t);
    t.node_rank = int_or(env, "SLURM_NODEID", t.node_rank);
    t.num_nodes = int_or(env, "SLURM_NNODES", t.num_nodes);
    // Several nodes meet at the first node of the job. On one node every
    // rank is local: loopback, which needs no name lookup (a node whose own
    // name does not resolve, such as a bare chroot, still runs its jobs).
    if (auto nodes = env_string(env, "SLURM_JOB_NODELIST"); nodes && t.num_nodes > 1)
      t.master_addr = first_slurm_host(*nodes);
  }
  if (auto addr = env_string(env, "MASTER_ADDR")) {
    t.master_addr = *addr;
  } else if ((t.source == "mpi" || t.source == "pmi") && t.num_nodes > 1) {
    // MPI launchers name no rendezvous; on one node loopback is right, on
    // several each node would wait for a rank 0 of its own.
    fail<std::invalid_argument>(
        "MASTER_ADDR is not set, and this ", t.source, " job spans ", t.num_nodes,
        " nodes: set it to the address of rank 0's host and pass it to every process, e.g. mpirun -x "
        "MASTER_ADDR=<host of rank 0> -x MASTER_PORT=29500 ... (Open MPI) or mpiexec -genv MASTER_ADDR <host> "
        "(MPICH); see docs/launching.md");
  }
  t.master_port = int_or(env, "MASTER_PORT", t.master_port);
  validate(t);
  return t;
}

}  // namespace accel
