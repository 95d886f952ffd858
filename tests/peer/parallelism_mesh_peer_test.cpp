// ParallelismConfig / DeviceMesh layout against Accelerate's
// ParallelismConfig built from the same PARALLELISM_CONFIG_* variables: the
// same refusals, mesh dim names and shape, flattened dims, and rank ->
// coordinates (torch.arange(world).reshape(shape), as init_device_mesh).
// tests/peer/scripts/parallelism_mesh.py prints Accelerate's side.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/mesh/parallelism_config.h"
#include "support/peers.h"

using namespace accel;

namespace {

using Vars = std::map<std::string, std::string>;

std::optional<ParallelismConfig> ours(Vars vars, std::string& error) {
  vars["ACCELERATE_USE_PARALLELISM_CONFIG"] = "true";
  try {
    return ParallelismConfig::from_env(env_from_map(vars));
  } catch (const std::invalid_argument& e) {
    error = e.what();
    return std::nullopt;
  }
}

}  // namespace

TEST(ParallelismMeshPeer, SameLayoutAndRefusalsAsAccelerate) {
  REQUIRE_PEERS("torch", "accelerate");
  const std::vector<Vars> cases{
      {},
      {{"PARALLELISM_CONFIG_DP_SHARD_SIZE", "2"}, {"PARALLELISM_CONFIG_TP_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "2"}, {"PARALLELISM_CONFIG_DP_SHARD_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "2"},
       {"PARALLELISM_CONFIG_DP_SHARD_SIZE", "2"},
       {"PARALLELISM_CONFIG_TP_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_DP_SHARD_SIZE", "2"},
       {"PARALLELISM_CONFIG_CP_SIZE", "2"},
       {"PARALLELISM_CONFIG_TP_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_TP_SIZE", "3"},
       {"PARALLELISM_CONFIG_CP_SIZE", "2"},
       {"PARALLELISM_CONFIG_CP_COMM_STRATEGY", "alltoall"}},
      {{"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "3"},
       {"PARALLELISM_CONFIG_CP_SIZE", "2"},
       {"PARALLELISM_CONFIG_DP_SHARD_SIZE", "2"}},
      // Refused by both.
      {{"PARALLELISM_CONFIG_CP_SIZE", "0"}},
      {{"PARALLELISM_CONFIG_TP_SIZE", "-1"}},
      {{"PARALLELISM_CONFIG_DP_SHARD_SIZE", "0"}},
      {{"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "2"}, {"PARALLELISM_CONFIG_TP_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "2"}, {"PARALLELISM_CONFIG_CP_SIZE", "2"}},
      {{"PARALLELISM_CONFIG_CP_SIZE", "2"}, {"PARALLELISM_CONFIG_CP_COMM_STRATEGY", "ring"}},
  };
  const nlohmann::json theirs = accel::testing::run_peer_script("parallelism_mesh.py", {nlohmann::json(cases).dump()});
  ASSERT_EQ(theirs.size(), cases.size());
  int refused = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + nlohmann::json(cases[i]).dump() + " accelerate: " + theirs[i].dump());
    std::string error;
    const auto c = ours(cases[i], error);
    if (theirs[i].contains("error")) {
      EXPECT_FALSE(c) << "accel accepted what Accelerate refuses";
      const std::string msg = theirs[i]["error"];
      // The size checks read word for word as Accelerate's.
      if (msg.find("must be at least 1") != std::string::npos) {
        EXPECT_EQ(error, msg);
      }
      ++refused;
      continue;
    }
    ASSERT_TRUE(c) << error;
    EXPECT_EQ(c->mesh_dim_names(), theirs[i]["names"].get<std::vector<std::string>>());
    EXPECT_EQ(c->mesh_shape(), theirs[i]["shape"].get<std::vector<int>>());
    EXPECT_EQ(c->total_size(), theirs[i]["total_size"].get<int>());
    const auto flat = c->flattened_dims();
    ASSERT_EQ(flat.size(), theirs[i]["flattened"].size());
    for (size_t k = 0; k < flat.size(); ++k) {
      EXPECT_EQ(flat[k].name, theirs[i]["flattened"][k]["name"].get<std::string>());
      EXPECT_EQ(flat[k].members, theirs[i]["flattened"][k]["members"].get<std::vector<std::string>>());
    }
    if (!c->mesh_shape().empty()) {
      for (int r = 0; r < c->total_size(); ++r) {
        EXPECT_EQ(mesh_coordinates(c->mesh_shape(), r), theirs[i]["coords"][r].get<std::vector<int>>()) << "rank " << r;
      }
    }
    if (!theirs[i]["cp_comm_strategy"].is_null()) {
      EXPECT_EQ(c->cp_comm_strategy, theirs[i]["cp_comm_strategy"].get<std::string>());
    }
  }
  EXPECT_EQ(refused, 6);
}
