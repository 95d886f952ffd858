// A program built on accel under the real MPI launchers that Debian ships:
// Open MPI's mpirun (OMPI_COMM_WORLD_*) and MPICH's Hydra mpiexec (PMI_*),
// each starting 2 processes on loopback. Environments built by hand agreed
// with a misreading of OMPI_COMM_WORLD_NODE_RANK once; only the launcher
// itself can say what it exports. The launchers come from scripts/setup.sh
// (openmpi-bin, mpich): where one is missing the test skips, and fails
// under ACCEL_REQUIRE_PEERS=1 (CI), like the Python peers.
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/probe.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::binary_path;
using accel::testing::expect_probe_ranks;
using accel::testing::Outcome;
using accel::testing::probe_program;
using accel::testing::run_shell;
using accel::testing::TempDir;

constexpr const char* kOpenMpi = "/usr/bin/mpirun.openmpi";
constexpr const char* kMpich = "/usr/bin/mpiexec.mpich";

// Open MPI refuses to start as root without both variables; --oversubscribe
// lets 2 processes start on a 1-core CI machine.
const std::string kOpenMpiRun =
    std::string("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") + kOpenMpi + " --oversubscribe -np 2";

// Runs `cmd` in `dir` with no GPU and no user config: the processes must
// meet on Gloo over loopback. The output starts with the command.
Outcome run_in(const TempDir& dir, const std::string& cmd) {
  const std::string full =
      "cd " + dir.path().string() + " && env HF_HOME=" + dir.path().string() + " CUDA_VISIBLE_DEVICES= " + cmd;
  auto r = run_shell(full, dir / "log");
  r.output = full + "\n" + r.output;
  return r;
}

std::string port() { return std::to_string(accel::find_free_port()); }

}  // namespace

TEST(MpiLaunch, OpenMpiMpirun) {
  REQUIRE_PROGRAM(kOpenMpi);
  const TempDir dir("mpi");
  auto run = run_in(dir, kOpenMpiRun + " -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=" + port() +
                             " -x ACCEL_PROBE_OUT=" + (dir / "probe").string() + " " + probe_program());
  ASSERT_EQ(run.status, 0) << run.output;
  expect_probe_ranks((dir / "probe").string(), "mpi", run.output);
}

TEST(MpiLaunch, OpenMpiOnOneNodeNeedsNoMasterAddr) {
  // One node: the rendezvous defaults to loopback, only the port is passed.
  REQUIRE_PROGRAM(kOpenMpi);
  const TempDir dir("mpi");
  auto run = run_in(dir, kOpenMpiRun + " -x MASTER_PORT=" + port() + " -x ACCEL_PROBE_OUT=" + (dir / "probe").string() +
                             " " + probe_program());
  ASSERT_EQ(run.status, 0) << run.output;
  expect_probe_ranks((dir / "probe").string(), "mpi", run.output);
}

TEST(MpiLaunch, OpenMpiTrainsTheSpiralsExample) {
  // The command from the issue that aborted on rank 1.
  REQUIRE_PROGRAM(kOpenMpi);
  const std::string spirals = binary_path("examples/spirals");
  if (!std::filesystem::exists(spirals)) GTEST_SKIP() << spirals << " not built (ACCEL_BUILD_EXAMPLES=OFF)";
  const TempDir dir("mpi");
  auto run = run_in(dir, kOpenMpiRun + " -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=" + port() + " " + spirals);
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("spirals: 2 process(es) on cpu, MULTI_CPU"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("test accuracy"), std::string::npos) << run.output;
}

TEST(MpiLaunch, MpichMpiexec) {
  REQUIRE_PROGRAM(kMpich);
  const TempDir dir("mpi");
  auto run = run_in(dir, std::string(kMpich) + " -n 2 -genv MASTER_ADDR 127.0.0.1 -genv MASTER_PORT " + port() +
                             " -genv ACCEL_PROBE_OUT " + (dir / "probe").string() + " " + probe_program());
  ASSERT_EQ(run.status, 0) << run.output;
  expect_probe_ranks((dir / "probe").string(), "pmi", run.output);
}
