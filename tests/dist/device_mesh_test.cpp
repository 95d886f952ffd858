// DeviceMesh over 4 and 8 Gloo ranks: each rank's coordinates, and for every
// mesh and flattened dimension, a gather and an all_reduce over its group
// see exactly the ranks of its slice, computed here independently by
// enumerating the mesh (an odometer over the shape, last dim fastest) and
// matching coordinates on the dimensions outside the slice.
#include <algorithm>

#include <gtest/gtest.h>

#include "accel/dist/collectives.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/state.h"
#include "support/distributed.h"

using namespace accel;
using accel::testing::run_distributed;

namespace {

// Every rank's coordinates, in rank order.
std::vector<std::vector<int>> enumerate(const std::vector<int>& shape) {
  std::vector<std::vector<int>> out;
  std::vector<int> c(shape.size(), 0);
  int world = 1;
  for (int s : shape) world *= s;
  for (int r = 0; r < world; ++r) {
    out.push_back(c);
    for (size_t i = shape.size(); i-- > 0;) {
      if (++c[i] < shape[i]) break;
      c[i] = 0;
    }
  }
  return out;
}

void check_mesh(const ParallelismConfig& config) {
  DeviceMesh mesh(state(), config);
  const int me = state().rank();
  const auto names = config.mesh_dim_names();
  const auto table = enumerate(config.mesh_shape());
  std::vector<std::pair<std::string, std::vector<std::string>>> dims;
  for (const auto& n : names) dims.push_back({n, {n}});
  for (const auto& f : config.flattened_dims()) dims.push_back({f.name, f.members});
  ASSERT_EQ(mesh.dim_names().size(), dims.size());
  for (const auto& [name, members] : dims) {
    std::vector<int> expected;
    for (int s = 0; s < static_cast<int>(table.size()); ++s) {
      bool same = true;
      for (size_t i = 0; i < names.size(); ++i)
        if (std::find(members.begin(), members.end(), names[i]) == members.end() && table[s][i] != table[me][i])
          same = false;
      if (same) expected.push_back(s);
    }
    SCOPED_TRACE("rank " + std::to_string(me) + " dim " + name);
    EXPECT_EQ(mesh.slice(name), expected);
    EXPECT_EQ(mesh.size(name), static_cast<int>(expected.size()));
    const int pos = static_cast<int>(std::find(expected.begin(), expected.end(), me) - expected.begin());
    EXPECT_EQ(mesh.coordinate(name), pos);
    if (members.size() == 1) {
      // A flattened dim of one member ("dp" over dp_shard alone) is that dim.
      const size_t i = std::find(names.begin(), names.end(), members[0]) - names.begin();
      EXPECT_EQ(mesh.coordinate(name), table[me][i]);
    }
    auto t = torch::tensor({static_cast<double>(me)}, torch::kFloat64);
    all_reduce_(t, ReduceOp::sum, mesh.group(name));
    double sum = 0;
    for (int s : expected) sum += s;
    EXPECT_EQ(t.item<double>(), sum);
    auto g = gather(torch::tensor({static_cast<int64_t>(me)}), mesh.group(name));
    ASSERT_EQ(g.numel(), static_cast<int64_t>(expected.size()));
    for (size_t k = 0; k < expected.size(); ++k) EXPECT_EQ(g[k].item<int64_t>(), expected[k]);
  }
}

ParallelismConfig cfg(int pp, int rep, int shard, int cp, int tp) {
  ParallelismConfig c;
  c.pp_size = pp;
  c.dp_replicate_size = rep;
  c.dp_shard_size = shard;
  c.cp_size = cp;
  c.tp_size = tp;
  return c;
}

}  // namespace

TEST(DeviceMesh, FourRanks) {
  run_distributed(4, [] {
    check_mesh(cfg(1, 1, 2, 1, 2));
    check_mesh(cfg(1, 2, 2, 1, 1));
    check_mesh(cfg(1, 1, 1, 2, 2));
    check_mesh(cfg(1, 1, 1, 1, 4));
  });
}

TEST(DeviceMesh, EightRanks) {
  run_distributed(8, [] {
    check_mesh(cfg(1, 2, 2, 1, 2));
    check_mesh(cfg(1, 1, 2, 2, 2));
    check_mesh(cfg(2, 1, 2, 1, 2));
    check_mesh(cfg(1, 2, 4, 1, 1));
  });
}

TEST(DeviceMesh, WrongWorldSizeNamesTheSizes) {
  run_distributed(4, [] {
    try {
      DeviceMesh mesh(state(), cfg(1, 1, 2, 1, 3));
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("total_size (6"), std::string::npos) << m;
      EXPECT_NE(m.find("world size (4)"), std::string::npos) << m;
    }
  });
}
