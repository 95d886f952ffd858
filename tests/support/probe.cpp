#include "support/probe.h"

#include <gtest/gtest.h>

#include "support/files.h"

namespace accel::testing {

std::string probe_program() { return binary_path("tests/accel_probe"); }

void expect_probe_ranks(const std::string& prefix, const std::string& source, const std::string& context,
                        std::source_location where) {
  for (int r = 0; r < 2; ++r) {
    const ::testing::ScopedTrace trace(where.file_name(), static_cast<int>(where.line()), "rank " + std::to_string(r));
    auto kv = read_key_values(prefix + "." + std::to_string(r));
    EXPECT_EQ(kv["rank"], std::to_string(r)) << context;
    EXPECT_EQ(kv["world_size"], "2");
    EXPECT_EQ(kv["local_rank"], std::to_string(r));
    EXPECT_EQ(kv["local_world_size"], "2");
    EXPECT_EQ(kv["node_rank"], "0");
    EXPECT_EQ(kv["num_nodes"], "1");
    EXPECT_EQ(kv["source"], source) << context;
    EXPECT_EQ(kv["device"], "cpu");
    EXPECT_EQ(kv["backend"], "gloo");
    EXPECT_EQ(kv["sum"], "3");       // 1 + 2
    EXPECT_EQ(kv["gathered"], "1");  // 0 + 1
    EXPECT_EQ(kv["objects"], "2:rank1");
  }
}

}  // namespace accel::testing
