// Topology parsing for every launcher's environment style.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "accel/dist/topology.h"
#include "support/errors.h"

using accel::env_from_map;
using accel::Topology;
using accel::testing::expect_error;

TEST(Topology, AloneWhenNothingIsSet) {
  auto t = Topology::from_env(env_from_map({}));
  EXPECT_EQ(t.rank, 0);
  EXPECT_EQ(t.world_size, 1);
  EXPECT_FALSE(t.is_distributed());
  EXPECT_EQ(t.source, "none");
}

TEST(Topology, TorchrunStyle) {
  auto t = Topology::from_env(env_from_map({{"RANK", "5"},
                                            {"WORLD_SIZE", "8"},
                                            {"LOCAL_RANK", "1"},
                                            {"LOCAL_WORLD_SIZE", "4"},
                                            {"GROUP_RANK", "1"},
                                            {"MASTER_ADDR", "10.0.0.1"},
                                            {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(t.source, "torchrun");
  EXPECT_EQ(t.rank, 5);
  EXPECT_EQ(t.world_size, 8);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.local_world_size, 4);
  EXPECT_EQ(t.node_rank, 1);
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.master_addr, "10.0.0.1");
  EXPECT_EQ(t.master_port, 1234);
  EXPECT_FALSE(t.is_main_process());
  EXPECT_FALSE(t.is_local_main_process());
}

TEST(Topology, TorchrunDerivesNodesWithoutGroupRank) {
  auto t = Topology::from_env(
      env_from_map({{"RANK", "6"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "4"}}));
  EXPECT_EQ(t.node_rank, 1);
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.master_addr, "127.0.0.1");
  EXPECT_EQ(t.master_port, Topology::kDefaultMasterPort);
}

TEST(Topology, OpenMpiStyle) {
  auto t = Topology::from_env(env_from_map({{"OMPI_COMM_WORLD_RANK", "3"},
                                            {"OMPI_COMM_WORLD_SIZE", "4"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                            {"MASTER_ADDR", "h0"}}));
  EXPECT_EQ(t.source, "mpi");
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.world_size, 4);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.local_world_size, 2);
  EXPECT_EQ(t.node_rank, 1);
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.master_addr, "h0");
}

TEST(Topology, TorchrunAgentStoreIsJoinedAsAClient) {
  auto t = Topology::from_env(env_from_map({{"RANK", "0"},
                                            {"WORLD_SIZE", "2"},
                                            {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                            {"TORCHELASTIC_RESTART_COUNT", "3"}}));
  EXPECT_TRUE(t.use_agent_store);
  EXPECT_EQ(t.restart_count, 3);
  // accel launch hosts no agent store: rank 0 serves.
  auto u =
      Topology::from_env(env_from_map({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "False"}}));
  EXPECT_FALSE(u.use_agent_store);
}

TEST(Topology, OpenMpiNodeRankIsTheRankOnTheNode) {
  // What Open MPI's mpirun really exports for rank 1 of `mpirun -np 2` on one
  // host: OMPI_COMM_WORLD_NODE_RANK is the rank among the node's processes.
  auto t = Topology::from_env(env_from_map({{"OMPI_COMM_WORLD_RANK", "1"},
                                            {"OMPI_COMM_WORLD_SIZE", "2"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                            {"OMPI_COMM_WORLD_NODE_RANK", "1"}}));
  EXPECT_EQ(t.node_rank, 0);
  EXPECT_EQ(t.num_nodes, 1);
  EXPECT_EQ(t.master_addr, "127.0.0.1");  // one node: loopback needs no MASTER_ADDR
  // Rank 5 of 6, three nodes of two: the third node, whatever NODE_RANK says.
  auto u = Topology::from_env(env_from_map({{"OMPI_COMM_WORLD_RANK", "5"},
                                            {"OMPI_COMM_WORLD_SIZE", "6"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                            {"OMPI_COMM_WORLD_NODE_RANK", "1"},
                                            {"MASTER_ADDR", "h0"}}));
  EXPECT_EQ(u.node_rank, 2);
  EXPECT_EQ(u.num_nodes, 3);
}

TEST(Topology, MpiOnSeveralNodesWithoutMasterAddrSaysWhatToSet) {
  for (auto env : {env_from_map({{"OMPI_COMM_WORLD_RANK", "0"},
                                 {"OMPI_COMM_WORLD_SIZE", "4"},
                                 {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                 {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}),
                   env_from_map({{"PMI_RANK", "0"}, {"PMI_SIZE", "4"}, {"MPI_LOCALNRANKS", "2"}})}) {
    expect_error<std::invalid_argument>([&] { Topology::from_env(env); },
                                        {"MASTER_ADDR is not set", "2 nodes", "docs/launching.md"});
  }
}

TEST(Topology, PmiStyle) {
  auto t = Topology::from_env(env_from_map({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}}));
  EXPECT_EQ(t.source, "pmi");
  EXPECT_EQ(t.rank, 2);
  EXPECT_EQ(t.world_size, 3);
  EXPECT_EQ(t.local_rank, 2);
  EXPECT_EQ(t.num_nodes, 1);
}

TEST(Topology, SlurmStyle) {
  auto t = Topology::from_env(env_from_map({{"SLURM_PROCID", "5"},
                                            {"SLURM_NTASKS", "6"},
                                            {"SLURM_LOCALID", "2"},
                                            {"SLURM_TASKS_PER_NODE", "3(x2)"},
                                            {"SLURM_NODEID", "1"},
                                            {"SLURM_NNODES", "2"},
                                            {"SLURM_JOB_NODELIST", "gpu[07-08]"}}));
  EXPECT_EQ(t.source, "slurm");
  EXPECT_EQ(t.rank, 5);
  EXPECT_EQ(t.world_size, 6);
  EXPECT_EQ(t.local_rank, 2);
  EXPECT_EQ(t.local_world_size, 3);
  EXPECT_EQ(t.node_rank, 1);
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.master_addr, "gpu07");
}

TEST(Topology, SlurmOnOneNodeMeetsOnLoopback) {
  // One node: the node's name is not needed (it may not even resolve there).
  auto t = Topology::from_env(env_from_map(
      {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_NNODES", "1"}, {"SLURM_JOB_NODELIST", "vm"}}));
  EXPECT_EQ(t.num_nodes, 1);
  EXPECT_EQ(t.master_addr, "127.0.0.1");
  // MASTER_ADDR, when set, still wins.
  auto given = Topology::from_env(env_from_map(
      {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "vm"}, {"MASTER_ADDR", "10.0.0.5"}}));
  EXPECT_EQ(given.master_addr, "10.0.0.5");
}

TEST(Topology, TorchrunWinsOverSlurm) {
  // torchrun started by srun: the launcher closest to the process wins.
  auto t = Topology::from_env(
      env_from_map({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(t.source, "torchrun");
  EXPECT_EQ(t.rank, 1);
}

TEST(Topology, SlurmHostLists) {
  EXPECT_EQ(accel::first_slurm_host("node1"), "node1");
  EXPECT_EQ(accel::first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(accel::first_slurm_host("node[03-05,7],gpu1"), "node03");
  EXPECT_EQ(accel::first_slurm_host("a[1,3]"), "a1");
}

TEST(Topology, BadValuesNameTheVariable) {
  expect_error<std::invalid_argument>(
      [] {
        Topology::from_env(env_from_map({{"RANK", "x"}, {"WORLD_SIZE", "2"}}));
      },
      {"RANK", "'x'"});
  EXPECT_THROW(Topology::from_env(env_from_map({{"RANK", "2"}, {"WORLD_SIZE", "2"}})), std::invalid_argument);
  EXPECT_THROW(Topology::from_env(env_from_map({{"RANK", "0"}})), std::invalid_argument);
  EXPECT_THROW(Topology::from_env(env_from_map({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})),
               std::invalid_argument);
}
