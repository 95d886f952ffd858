// A program built on accel under Slurm's own srun, on a one-node cluster
// that the test starts on loopback (slurmctld + slurmd from Debian's slurmctld,
// slurmd and slurm-client packages, installed by scripts/setup.sh; auth/none,
// no munge, no cgroups). The daemons run as root: elsewhere the test skips.
// Missing packages skip it too, and fail it under ACCEL_REQUIRE_PEERS=1 (CI).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/probe.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::command_output;
using accel::testing::expect_probe_ranks;
using accel::testing::probe_program;
using accel::testing::read_file;
using accel::testing::TempDir;

// What `cmd` prints on stdout and stderr.
std::string run(const std::string& cmd) { return command_output(cmd + " 2>&1"); }

class SlurmLaunch : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/srun"}) {
      REQUIRE_PROGRAM(tool);
    }
    if (geteuid() != 0) GTEST_SKIP() << "the one-node Slurm cluster runs its daemons as root";
    std::filesystem::create_directories(dir_ / "state");
    std::filesystem::create_directories(dir_ / "spool");
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const auto d = dir_.path().string();
    std::ofstream(dir_ / "slurm.conf")
        << "ClusterName=accel\nSlurmctldHost=" << host << "(127.0.0.1)\n"
        << "SlurmctldPort=" << accel::find_free_port() << "\nSlurmdPort=" << accel::find_free_port() << "\n"
        << "AuthType=auth/none\nCredType=cred/none\nSlurmUser=root\nSlurmdUser=root\n"
        << "StateSaveLocation=" << d << "/state\nSlurmdSpoolDir=" << d << "/spool\n"
        << "SlurmctldPidFile=" << d << "/slurmctld.pid\nSlurmdPidFile=" << d << "/slurmd.pid\n"
        << "SlurmctldLogFile=" << d << "/slurmctld.log\nSlurmdLogFile=" << d << "/slurmd.log\n"
        << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\nReturnToService=2\n"
        << "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
        << "JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n"
        << "NodeName=" << host << " NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n"
        << "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES\n";
    conf_ = "SLURM_CONF=" + (dir_ / "slurm.conf").string();
    // Both daemonise; their pid files say whom to stop.
    started_ =
        std::system(("env " + conf_ + " /usr/sbin/slurmctld && env " + conf_ + " /usr/sbin/slurmd").c_str()) == 0;
    ASSERT_TRUE(started_) << read_file(dir_ / "slurmctld.log") << read_file(dir_ / "slurmd.log");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::string state;
    while (std::chrono::steady_clock::now() < until) {
      state = run("env " + conf_ + " sinfo -h -o %T");
      if (state.find("idle") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "the node did not become idle: " << state << "\n" << read_file(dir_ / "slurmctld.log");
  }
  void TearDown() override {
    // The daemons first: the folder goes after TearDown.
    for (const char* daemon : {"slurmd.pid", "slurmctld.pid"}) {
      pid_t pid = 0;
      if (std::ifstream(dir_ / daemon) >> pid && pid > 0) {
        kill(pid, SIGTERM);
        for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  TempDir dir_{"slurm"};
  std::string conf_;
  bool started_ = false;
};

}  // namespace

TEST_F(SlurmLaunch, SrunStartsTwoRanksThatMeet) {
  // No MASTER_ADDR, one node: the ranks meet on loopback.
  const std::string prefix = (dir_ / "probe").string();
  const std::string cmd = "cd " + dir_.path().string() + " && env " + conf_ + " ACCEL_PROBE_OUT=" + prefix +
                          " MASTER_PORT=" + std::to_string(accel::find_free_port()) +
                          " CUDA_VISIBLE_DEVICES= timeout 120 srun -N1 -n2 --oversubscribe " + probe_program();
  const std::string out = run(cmd);
  expect_probe_ranks(prefix, "slurm", cmd + "\n" + out);
}
