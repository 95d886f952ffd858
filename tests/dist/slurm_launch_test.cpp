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
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "accel_test_paths.h"
#include "support/peers.h"

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    pclose(f);
  }
  return out;
}

class SlurmLaunch : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/srun"})
      if (!fs::exists(tool)) {
        if (::accel::testing::peers_required()) GTEST_FAIL() << tool << " is missing (scripts/setup.sh installs it)";
        GTEST_SKIP() << tool << " is missing (scripts/setup.sh installs it)";
      }
    if (geteuid() != 0) GTEST_SKIP() << "the one-node Slurm cluster runs its daemons as root";
    dir_ = fs::temp_directory_path() / ("accel_slurm_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "state");
    fs::create_directories(dir_ / "spool");
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const auto d = dir_.string();
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
    ASSERT_TRUE(started_) << read_text(dir_ / "slurmctld.log") << read_text(dir_ / "slurmd.log");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::string state;
    while (std::chrono::steady_clock::now() < until) {
      state = run("env " + conf_ + " sinfo -h -o %T");
      if (state.find("idle") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "the node did not become idle: " << state << "\n" << read_text(dir_ / "slurmctld.log");
  }
  void TearDown() override {
    if (dir_.empty()) return;
    for (const char* daemon : {"slurmd.pid", "slurmctld.pid"}) {
      pid_t pid = 0;
      if (std::ifstream(dir_ / daemon) >> pid && pid > 0) {
        kill(pid, SIGTERM);
        for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::string conf_;
  bool started_ = false;
};

}  // namespace

TEST_F(SlurmLaunch, SrunStartsTwoRanksThatMeet) {
  // No MASTER_ADDR: the rendezvous is the first host of SLURM_JOB_NODELIST.
  const std::string prefix = (dir_ / "probe").string();
  const std::string cmd = "cd " + dir_.string() + " && env " + conf_ + " ACCEL_PROBE_OUT=" + prefix +
                          " MASTER_PORT=" + std::to_string(accel::find_free_port()) +
                          " CUDA_VISIBLE_DEVICES= timeout 120 srun -N1 -n2 --oversubscribe " + ACCEL_BINARY_DIR +
                          "/tests/accel_probe";
  const std::string out = run(cmd);
  for (int r = 0; r < 2; ++r) {
    std::map<std::string, std::string> kv;
    std::istringstream in(read_text(prefix + "." + std::to_string(r)));
    for (std::string line; std::getline(in, line);)
      if (auto eq = line.find('='); eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    EXPECT_EQ(kv["source"], "slurm") << cmd << "\n" << out;
    EXPECT_EQ(kv["rank"], std::to_string(r));
    EXPECT_EQ(kv["world_size"], "2");
    EXPECT_EQ(kv["local_rank"], std::to_string(r));
    EXPECT_EQ(kv["local_world_size"], "2");
    EXPECT_EQ(kv["node_rank"], "0");
    EXPECT_EQ(kv["num_nodes"], "1");
    EXPECT_EQ(kv["sum"], "3");
    EXPECT_EQ(kv["objects"], "2:rank1");
  }
}
