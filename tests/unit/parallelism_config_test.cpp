// parallel/mesh/parallelism_config.h: Accelerate 1.15's rules, mesh order,
// flattened dims and variables, and the row-major rank placement.
#include <gtest/gtest.h>

#include <stdexcept>

#include "accel/parallel/mesh/parallelism_config.h"
#include "support/errors.h"

namespace {

using accel::testing::error_of;

TEST(ParallelismConfig, DefaultsAreOneEverywhereWithAnEmptyMesh) {
  accel::ParallelismConfig c;
  c.validate();
  EXPECT_EQ(c.total_size(), 1);
  EXPECT_TRUE(c.mesh_dim_names().empty());
  EXPECT_TRUE(c.flattened_dims().empty());
  EXPECT_EQ(c.cp_comm_strategy, "allgather");
}

TEST(ParallelismConfig, SizeBelowOneIsRefusedNamingTheValue) {
  accel::ParallelismConfig c;
  c.tp_size = 0;
  EXPECT_NE(error_of<std::invalid_argument>([&] { c.validate(); }).find("tp_size must be at least 1, but got 0"),
            std::string::npos);
  c.tp_size = 1;
  c.dp_shard_size = -2;
  EXPECT_NE(error_of<std::invalid_argument>([&] { c.validate(); }).find("dp_shard_size must be at least 1, but got -2"),
            std::string::npos);
}

TEST(ParallelismConfig, UnknownCommStrategyIsRefused) {
  accel::ParallelismConfig c;
  c.cp_comm_strategy = "ring";
  c.validate();  // as Accelerate: ignored while cp is off
  c.cp_size = 2;
  EXPECT_NE(error_of<std::invalid_argument>([&] { c.validate(); }).find("'ring'"), std::string::npos);
}

TEST(ParallelismConfig, TensorParallelWithPureReplicationIsRefused) {
  accel::ParallelismConfig c;
  c.dp_replicate_size = 2;
  c.tp_size = 2;
  const std::string m = error_of<std::invalid_argument>([&] { c.validate(); });
  EXPECT_NE(m.find("tp_size=2"), std::string::npos) << m;
  EXPECT_NE(m.find("dp_replicate_size=2"), std::string::npos) << m;
  c.dp_shard_size = 2;  // HSDP + TP is allowed
  c.validate();
}

TEST(ParallelismConfig, WorldSizeMismatchNamesEverySize) {
  accel::ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = 3;
  c.check_world_size(6);
  const std::string m = error_of<std::invalid_argument>([&] { c.check_world_size(8); });
  EXPECT_NE(m.find("total_size (6"), std::string::npos) << m;
  EXPECT_NE(m.find("dp_shard_size 2"), std::string::npos) << m;
  EXPECT_NE(m.find("tp_size 3"), std::string::npos) << m;
  EXPECT_NE(m.find("world size (8)"), std::string::npos) << m;
}

TEST(ParallelismConfig, MeshOrderIsPpDpReplicateDpShardCpTpWithInactiveDimsLeftOut) {
  accel::ParallelismConfig c;
  c.tp_size = 2;
  c.dp_replicate_size = 3;
  c.dp_shard_size = 4;
  c.cp_size = 5;
  c.pp_size = 6;
  EXPECT_EQ(c.mesh_dim_names(), (std::vector<std::string>{"pp", "dp_replicate", "dp_shard", "cp", "tp"}));
  EXPECT_EQ(c.mesh_shape(), (std::vector<int>{6, 3, 4, 5, 2}));
  c.dp_replicate_size = 1;
  c.pp_size = 1;
  EXPECT_EQ(c.mesh_dim_names(), (std::vector<std::string>{"dp_shard", "cp", "tp"}));
  EXPECT_EQ(c.mesh_shape(), (std::vector<int>{4, 5, 2}));
}

TEST(ParallelismConfig, FlattenedDimsListTheirActiveMembers) {
  accel::ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = 2;
  const auto f = c.flattened_dims();
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].name, "dp");
  EXPECT_EQ(f[0].members, (std::vector<std::string>{"dp_shard"}));
  EXPECT_EQ(f[1].name, "dp_shard_cp");
  EXPECT_EQ(f[1].members, (std::vector<std::string>{"dp_shard"}));
  EXPECT_EQ(f[2].name, "dp_cp");
  EXPECT_EQ(f[2].members, (std::vector<std::string>{"dp_shard"}));

  accel::ParallelismConfig only_tp;
  only_tp.tp_size = 4;
  EXPECT_TRUE(only_tp.flattened_dims().empty());
}

TEST(ParallelismConfig, FromEnvNeedsTheSwitchAndReadsEverySize) {
  EXPECT_FALSE(accel::ParallelismConfig::from_env(accel::env_from_map({{"PARALLELISM_CONFIG_TP_SIZE", "2"}})));
  // Accelerate accepts only "true" (any case), not 1/yes.
  EXPECT_FALSE(accel::ParallelismConfig::from_env(accel::env_from_map({{"ACCELERATE_USE_PARALLELISM_CONFIG", "1"}})));
  const auto c =
      accel::ParallelismConfig::from_env(accel::env_from_map({{"ACCELERATE_USE_PARALLELISM_CONFIG", "TRUE"},
                                                              {"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "2"},
                                                              {"PARALLELISM_CONFIG_DP_SHARD_SIZE", "3"},
                                                              {"PARALLELISM_CONFIG_TP_SIZE", "4"},
                                                              {"PARALLELISM_CONFIG_CP_SIZE", "5"},
                                                              {"PARALLELISM_CONFIG_PP_SIZE", "6"},
                                                              {"PARALLELISM_CONFIG_CP_COMM_STRATEGY", "alltoall"}}));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->dp_replicate_size, 2);
  EXPECT_EQ(c->dp_shard_size, 3);
  EXPECT_EQ(c->tp_size, 4);
  EXPECT_EQ(c->cp_size, 5);
  EXPECT_EQ(c->pp_size, 6);
  EXPECT_EQ(c->cp_comm_strategy, "alltoall");
}

TEST(ParallelismConfig, FromEnvValidates) {
  const std::string m = error_of<std::invalid_argument>([] {
    accel::ParallelismConfig::from_env(
        accel::env_from_map({{"ACCELERATE_USE_PARALLELISM_CONFIG", "true"}, {"PARALLELISM_CONFIG_CP_SIZE", "0"}}));
  });
  EXPECT_NE(m.find("cp_size must be at least 1, but got 0"), std::string::npos) << m;
}

TEST(MeshCoordinates, RowMajorAsArangeReshape) {
  // Independent placement: walk the mesh in nested loops, last dim fastest.
  const std::vector<int> shape{2, 3, 2};
  int rank = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 2; ++c, ++rank) EXPECT_EQ(accel::mesh_coordinates(shape, rank), (std::vector<int>{a, b, c}));
  EXPECT_NE(error_of<std::invalid_argument>([&] { accel::mesh_coordinates(shape, 12); }).find("rank 12"),
            std::string::npos);
}

}  // namespace
