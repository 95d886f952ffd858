// Issue 20, wrong values accepted silently and arithmetic faults: every
// integer read from a user (flag, config key, environment variable, file
// field) is range-checked against the type it ends up in, with a message
// naming the key and the value; nothing divides by a count before the count
// is checked (--num_machines 0 ended in SIGFPE); a number that does not parse
// is named by its key, never "stod" or "stoll".
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "accel/dist/topology.h"
#include "accel/launch/launch_plan.h"
#include "accel/parallel/sharding_config.h"
#include "accel/util/checked_number.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/launch.h"
#include "support/temp_dir.h"

namespace accel {
namespace {

using accel::testing::error_of;
using accel::testing::plan_for;
using accel::testing::ScopedEnv;
using accel::testing::TempDir;
using launch::LaunchPlan;

TEST(CheckedNumber, ParsesWholeTextWithinTheRange) {
  EXPECT_EQ(parse_integer<int>("2147483647", "n"), 2147483647);
  EXPECT_EQ(parse_integer<int>("+3", "n"), 3);
  EXPECT_EQ(parse_integer<int>("-3", "n"), -3);
  EXPECT_EQ(error_of<std::invalid_argument>([] { parse_integer<int>("4294967298", "--num_processes"); }),
            "--num_processes: expected an integer from -2147483648 to 2147483647, got '4294967298'");
  EXPECT_EQ(error_of<std::invalid_argument>([] { parse_integer<int>("two", "--num_processes"); }),
            "--num_processes: expected an integer, got 'two'");
  EXPECT_EQ(error_of<std::invalid_argument>([] { parse_integer<uint16_t>("-1", "port"); }),
            "port: expected an integer from 0 to 65535, got '-1'");
  for (const char* bad : {"", " 1", "1 ", "1.0", "0x10", "1e3", "--1"})
    EXPECT_NE(error_of<std::invalid_argument>([&] { parse_integer<int>(bad, "k"); }).find("k: expected an integer"),
              std::string::npos)
        << bad;
  // A 100,000-digit value: out of range, quoted by a prefix.
  const std::string m =
      error_of<std::invalid_argument>([] { parse_integer<long long>(std::string(100'000, '9'), "k"); });
  EXPECT_NE(m.find("(100000 bytes)"), std::string::npos);
  EXPECT_LT(m.size(), 200u);
  EXPECT_EQ(error_of<std::invalid_argument>([] { check_integer_in(4294967298, "num_processes", 1, 2147483647); }),
            "num_processes 4294967298: expected an integer from 1 to 2147483647");
  EXPECT_EQ(checked_cast<int>(-5, "x"), -5);
  EXPECT_DOUBLE_EQ(parse_number("1e-3", "lr"), 1e-3);
  EXPECT_TRUE(std::isinf(parse_number("inf", "lr")));
  EXPECT_EQ(error_of<std::invalid_argument>([] { parse_number("abc", "--monitor_interval"); }),
            "--monitor_interval: expected a number, got 'abc'");
}

class LaunchNumbers : public ::testing::Test {
 protected:
  LaunchPlan plan(const std::vector<std::pair<std::string, std::string>>& flags,
                  std::map<std::string, std::string> env = {}, int cores = 8) {
    return plan_for(flags, env_from_map(env), /*gpus=*/0, cores);
  }
  std::string config(const std::string& text) {
    const auto p = dir_ / "config.yaml";
    std::ofstream(p) << text;
    return p.string();
  }
  TempDir dir_{"numbers"};
  ScopedEnv hf_home_{"HF_HOME", (dir_ / "hf").string()};  // no default config
};

TEST_F(LaunchNumbers, CountsOutsideTheirTypeOrRangeAreRefused) {
  // 4294967298 would be 2 as an int.
  EXPECT_EQ(error_of<std::invalid_argument>([&] {
              plan({{"cpu", ""}, {"num_processes", "4294967298"}});
            }),
            "num_processes 4294967298: expected an integer from 1 to 2147483647");
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"cpu", ""}, {"num_processes", "-4294967295"}});
            }).find("num_processes -4294967295"),
            std::string::npos);
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"main_process_port", "70000"}, {"num_processes", "2"}, {"cpu", ""}});
            }).find("main_process_port 70000: expected an integer from 0 to 65535"),
            std::string::npos);
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"max_restarts", "4294967296"}});
            }).find("max_restarts 4294967296"),
            std::string::npos);
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"num_cpu_threads_per_process", "0"}});
            }).find("num_cpu_threads_per_process 0"),
            std::string::npos);
  for (const char* g : {"nan", "-1", "1e300"})
    EXPECT_NE(error_of<std::invalid_argument>([&] {
                plan({{"grace_period", g}});
              }).find("--grace_period"),
              std::string::npos)
        << g;
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"monitor_interval", "0"}});
            }).find("--monitor_interval"),
            std::string::npos);
  EXPECT_EQ(error_of<std::invalid_argument>([&] {
              plan({{"monitor_interval", "abc"}});
            }),
            "--monitor_interval: expected a number, got 'abc'");
}

TEST_F(LaunchNumbers, ZeroMachinesIsRefusedBeforeAnythingDividesByIt) {
  // The CPU thread default divides num_processes by num_machines.
  for (const auto& flags : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"num_machines", "0"}},
           {{"cpu", ""}, {"num_machines", "0"}, {"num_processes", "2"}},
           {{"cpu", ""}, {"num_machines", "-1"}},
       })
    EXPECT_NE(error_of<std::invalid_argument>([&] { plan(flags); }).find("num_machines"), std::string::npos);
  // The same from a config file, which refuses it when read.
  const std::string cfg = config("distributed_type: MULTI_CPU\nnum_processes: 2\nnum_machines: 0\nuse_cpu: true\n");
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"config_file", cfg}});
            }).find("num_machines': expected an integer from 1"),
            std::string::npos);
  // A launcher's local size of 0 (MPI_LOCALNRANKS) is another divisor.
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"cpu", ""}, {"num_processes", "2"}}, {{"MPI_LOCALNRANKS", "0"}});
            }).find("MPI_LOCALNRANKS"),
            std::string::npos);
  // machine_rank must be below num_machines.
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"num_machines", "2"},
                    {"machine_rank", "2"},
                    {"main_process_ip", "10.0.0.1"},
                    {"main_process_port", "29500"},
                    {"num_processes", "2"}});
            }).find("machine_rank 2: expected an integer from 0 to 1"),
            std::string::npos);
}

TEST_F(LaunchNumbers, FarMoreWorkersThanCoresIsNotAcceptedSilently) {
  // A note beyond the cores, a refusal far beyond (10000 on 2 cores).
  auto p = plan({{"cpu", ""}, {"num_processes", "16"}, {"main_process_port", "0"}}, {}, 2);
  ASSERT_FALSE(p.notes.empty());
  EXPECT_NE(p.notes.back().find("16 workers on 2 CPU core(s)"), std::string::npos) << p.notes.back();
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              plan({{"cpu", ""}, {"num_processes", "10000"}}, {}, 2);
            }).find("10000 workers"),
            std::string::npos);
}

TEST(EnvironmentNumbers, RankVariablesMustFitAnInt) {
  auto topology = [](std::map<std::string, std::string> vars) { return Topology::from_env(env_from_map(vars)); };
  const std::map<std::string, std::string> base = {{"RANK", "0"},        {"WORLD_SIZE", "2"},
                                                   {"LOCAL_RANK", "0"},  {"LOCAL_WORLD_SIZE", "2"},
                                                   {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  EXPECT_EQ(topology(base).world_size, 2);
  auto big = base;
  big["WORLD_SIZE"] = "4294967298";
  EXPECT_NE(error_of<std::invalid_argument>([&] { topology(big); }).find("WORLD_SIZE: expected an integer from"),
            std::string::npos);
  auto port = base;
  port["MASTER_PORT"] = "4294996796";  // 29500 + 2^32
  EXPECT_NE(error_of<std::invalid_argument>([&] { topology(port); }).find("MASTER_PORT"), std::string::npos);
}

TEST(EnvironmentNumbers, UnparsableNumbersNameTheVariable) {
  const auto env = env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_GRADIENT_CLIPPING", "abc"}});
  EXPECT_EQ(error_of<std::invalid_argument>([&] { sharding_config_from_env(env); }),
            "environment variable ACCELERATE_GRADIENT_CLIPPING: expected a number, got 'abc'");
  const auto gas =
      env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "99999999999"}});
  EXPECT_NE(error_of<std::invalid_argument>([&] {
              sharding_config_from_env(gas);
            }).find("ACCELERATE_GRADIENT_ACCUMULATION_STEPS"),
            std::string::npos);
}

TEST(PortProbe, APortBoundButNotListeningIsInUse) {
  // What rank 0's store would hit (EADDRINUSE): a socket bound without listen().
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const int port = ntohs(sa.sin_port);
  EXPECT_TRUE(launch::port_in_use(port));
  close(fd);
  EXPECT_FALSE(launch::port_in_use(port));
  // And the launcher moves off it (one machine) with a note.
  fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  const ScopedEnv no_config("HF_HOME", "/nonexistent-accel-test");
  const LaunchPlan p = plan_for({{"cpu", ""}, {"num_processes", "2"}, {"main_process_port", std::to_string(port)}},
                                env_from_map({}), /*gpus=*/0, /*cores=*/4);
  EXPECT_NE(p.master_port, port);
  ASSERT_FALSE(p.notes.empty());
  EXPECT_NE(p.notes.front().find("already in use"), std::string::npos);
  close(fd);
}

}  // namespace
}  // namespace accel
