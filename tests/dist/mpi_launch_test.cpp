// A program built on accel under the real MPI launchers that Debian ships:
// Open MPI's mpirun (OMPI_COMM_WORLD_*) and MPICH's Hydra mpiexec (PMI_*),
// each starting 2 processes on loopback. Environments built by hand agreed
// with a misreading of OMPI_COMM_WORLD_NODE_RANK once; only the launcher
// itself can say what it exports. The launchers come from scripts/setup.sh
// (openmpi-bin, mpich): where one is missing the test skips, and fails
// under ACCEL_REQUIRE_PEERS=1 (CI), like the Python peers.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "accel_test_paths.h"
#include "support/peers.h"

namespace fs = std::filesystem;

namespace {

#define REQUIRE_LAUNCHER(path)                                                                                    \
  if (!fs::exists(path)) {                                                                                        \
    if (::accel::testing::peers_required()) GTEST_FAIL() << path << " is missing (scripts/setup.sh installs it)"; \
    GTEST_SKIP() << path << " is missing (scripts/setup.sh installs it)";                                         \
  }

constexpr const char* kOpenMpi = "/usr/bin/mpirun.openmpi";
constexpr const char* kMpich = "/usr/bin/mpiexec.mpich";

// Open MPI refuses to start as root without both variables; --oversubscribe
// lets 2 processes start on a 1-core CI machine.
const std::string kOpenMpiRun =
    std::string("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") + kOpenMpi + " --oversubscribe -np 2";

std::map<std::string, std::string> read_probe(const fs::path& path) {
  std::map<std::string, std::string> kv;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

struct Run {
  int status;
  std::string log;
};

Run run_shell(const fs::path& dir, const std::string& cmd) {
  const auto log_path = dir / "log";
  // No GPU and no user config: the processes must meet on Gloo over loopback.
  const std::string full = "cd " + dir.string() + " && env HF_HOME=" + dir.string() + " CUDA_VISIBLE_DEVICES= " + cmd +
                           " > " + log_path.string() + " 2>&1";
  const int rc = std::system(full.c_str());
  std::ifstream in(log_path);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : 128, full + "\n" + text.str()};
}

fs::path fresh_dir(const std::string& tag) {
  auto dir = fs::temp_directory_path() / ("accel_mpi_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The probe (tests/probe/probe.cpp) reports the topology it read and the
// results of a reduce, a gather and an object gather.
void expect_probe(const fs::path& dir, const std::string& source, const std::string& log) {
  for (int r = 0; r < 2; ++r) {
    auto kv = read_probe(dir / ("probe." + std::to_string(r)));
    EXPECT_EQ(kv["rank"], std::to_string(r)) << log;
    EXPECT_EQ(kv["world_size"], "2");
    EXPECT_EQ(kv["local_rank"], std::to_string(r));
    EXPECT_EQ(kv["local_world_size"], "2");
    EXPECT_EQ(kv["node_rank"], "0");
    EXPECT_EQ(kv["num_nodes"], "1");
    EXPECT_EQ(kv["source"], source);
    EXPECT_EQ(kv["backend"], "gloo");
    EXPECT_EQ(kv["sum"], "3");       // 1 + 2
    EXPECT_EQ(kv["gathered"], "1");  // 0 + 1
    EXPECT_EQ(kv["objects"], "2:rank1");
  }
}

std::string probe() { return std::string(ACCEL_BINARY_DIR) + "/tests/accel_probe"; }
std::string port() { return std::to_string(accel::find_free_port()); }

}  // namespace

TEST(MpiLaunch, OpenMpiMpirun) {
  REQUIRE_LAUNCHER(kOpenMpi);
  auto dir = fresh_dir("ompi");
  auto run = run_shell(dir, kOpenMpiRun + " -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=" + port() +
                                " -x ACCEL_PROBE_OUT=" + (dir / "probe").string() + " " + probe());
  ASSERT_EQ(run.status, 0) << run.log;
  expect_probe(dir, "mpi", run.log);
  fs::remove_all(dir);
}

TEST(MpiLaunch, OpenMpiOnOneNodeNeedsNoMasterAddr) {
  // One node: the rendezvous defaults to loopback, only the port is passed.
  REQUIRE_LAUNCHER(kOpenMpi);
  auto dir = fresh_dir("ompi_noaddr");
  auto run = run_shell(dir, kOpenMpiRun + " -x MASTER_PORT=" + port() +
                                " -x ACCEL_PROBE_OUT=" + (dir / "probe").string() + " " + probe());
  ASSERT_EQ(run.status, 0) << run.log;
  expect_probe(dir, "mpi", run.log);
  fs::remove_all(dir);
}

TEST(MpiLaunch, OpenMpiTrainsTheSpiralsExample) {
  // The command from the issue that aborted on rank 1.
  REQUIRE_LAUNCHER(kOpenMpi);
  const std::string spirals = std::string(ACCEL_BINARY_DIR) + "/examples/spirals";
  if (!fs::exists(spirals)) GTEST_SKIP() << spirals << " not built (ACCEL_BUILD_EXAMPLES=OFF)";
  auto dir = fresh_dir("ompi_spirals");
  auto run = run_shell(dir, kOpenMpiRun + " -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=" + port() + " " + spirals);
  ASSERT_EQ(run.status, 0) << run.log;
  EXPECT_NE(run.log.find("spirals: 2 process(es) on cpu, MULTI_CPU"), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("test accuracy"), std::string::npos) << run.log;
  fs::remove_all(dir);
}

TEST(MpiLaunch, MpichMpiexec) {
  REQUIRE_LAUNCHER(kMpich);
  auto dir = fresh_dir("mpich");
  auto run = run_shell(dir, std::string(kMpich) + " -n 2 -genv MASTER_ADDR 127.0.0.1 -genv MASTER_PORT " + port() +
                                " -genv ACCEL_PROBE_OUT " + (dir / "probe").string() + " " + probe());
  ASSERT_EQ(run.status, 0) << run.log;
  expect_probe(dir, "pmi", run.log);
  fs::remove_all(dir);
}
