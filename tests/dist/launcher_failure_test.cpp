// Failure handling: a rank that throws or dies ends the whole group, named;
// a rendezvous that cannot complete ends with the timeout error, not a hang.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <gtest/gtest.h>

#include "accel/dist/collectives.h"
#include "accel/dist/launcher.h"
#include "accel/state.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

using namespace accel;
using namespace std::chrono_literals;
using accel::testing::expect_error;
using accel::testing::read_file;
using accel::testing::TempDir;

TEST(LauncherFailure, ThrowingRankEndsTheGroupWithinSeconds) {
  auto start = std::chrono::steady_clock::now();
  LaunchOptions opts;
  opts.num_processes = 3;
  opts.grace = 2s;
  const TempDir dir("launcher_failure");
  const auto pids = dir / "pids.txt";
  auto result = launch_processes(
      [&] {
        auto& st = state();
        std::ofstream(pids, std::ios::app) << getpid() << "\n";
        wait_for_everyone();
        if (st.rank() == 1) throw std::runtime_error("boom");
        // The others block in a collective that can never complete.
        wait_for_everyone();
        wait_for_everyone();
      },
      opts);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result.ok());
  ASSERT_TRUE(result.first_failure);
  EXPECT_EQ(result.first_failure->rank, 1);
  EXPECT_EQ(result.first_failure->exit_code, 1);
  EXPECT_NE(result.describe().find("rank 1"), std::string::npos) << result.describe();
  EXPECT_LT(took, 20s);
  // No process is left behind.
  std::ifstream in(pids);
  int pid = 0, count = 0;
  while (in >> pid) {
    ++count;
    EXPECT_EQ(kill(pid, 0), -1) << "worker " << pid << " still exists";
  }
  EXPECT_EQ(count, 3);
}

TEST(LauncherFailure, RankKilledBySignalIsNamed) {
  auto result = launch_processes([] {
    if (state().rank() == 0) raise(SIGKILL);
    wait_for_everyone();
  });
  ASSERT_TRUE(result.first_failure);
  EXPECT_EQ(result.first_failure->rank, 0);
  EXPECT_EQ(result.first_failure->signal, SIGKILL);
  EXPECT_EQ(result.exit_status(), 128 + SIGKILL);
  EXPECT_NE(result.describe().find("signal 9"), std::string::npos) << result.describe();
}

TEST(LauncherFailure, DebugLauncherThrowsNamingTheRank) {
  expect_error<LaunchError>(
      [] {
        debug_launcher([] {
          if (state().rank() == 1) throw std::runtime_error("bad");
        });
      },
      {"rank 1"});
}

// Joins the process group with a timeout (rank 0 `rank0_timeout`, the
// others `timeout`) and, when rendezvous fails, writes its message to
// `path` (from rank 0 only, or from whichever rank this is) before failing.
static void init_recording_error(const std::filesystem::path& path, std::chrono::seconds rank0_timeout,
                                 std::chrono::seconds timeout, bool only_rank0) {
  const bool rank0 = std::getenv("RANK") == std::string("0");
  StateOptions so;
  so.timeout(rank0 ? rank0_timeout : timeout);
  try {
    ProcessState::init(so);
  } catch (const RendezvousError& e) {
    if (rank0 || !only_rank0) std::ofstream(path) << e.what();
    throw;
  }
}

TEST(LauncherFailure, MissingRankGivesTimeoutErrorNamingIt) {
  // World size 3, but only ranks 0 and 1 exist: rank 0 must name rank 2.
  auto start = std::chrono::steady_clock::now();
  int port = find_free_port();
  LaunchOptions opts;
  opts.num_processes = 2;
  opts.master_port = port;
  opts.env = {{"WORLD_SIZE", "3"}};
  const TempDir dir("launcher_failure");
  const auto path = dir / "message.txt";
  // Rank 1 waits longer, so that rank 0 times out first and writes its
  // message before the launcher ends the job (with equal timeouts rank 1
  // could fail first and rank 0 be killed before writing).
  auto result = launch_processes([&] { init_recording_error(path, 2s, 10s, /*only_rank0=*/true); }, opts);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
  ASSERT_FALSE(result.ok());
  const std::string msg = read_file(path);
  EXPECT_NE(msg.find("rank(s) 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
  EXPECT_NE(msg.find("2.0 s"), std::string::npos) << msg;
}

TEST(LauncherFailure, UnreachableMasterGivesTimeoutError) {
  // A client rank whose master never comes up: wrong MASTER_PORT.
  LaunchOptions opts;
  opts.num_processes = 1;
  opts.env = {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", std::to_string(find_free_port())}};
  const TempDir dir("launcher_failure");
  const auto path = dir / "message.txt";
  auto start = std::chrono::steady_clock::now();
  auto result = launch_processes([&] { init_recording_error(path, 2s, 10s, /*only_rank0=*/false); }, opts);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_FALSE(result.ok());
  const std::string msg = read_file(path);
  EXPECT_NE(msg.find("rank 1 could not reach"), std::string::npos) << msg;
}

TEST(LauncherFailure, PortInUseIsNamed) {
  // Rank 0 of a 1-process "group" of 2 hosts the store on a port another
  // store already holds.
  int port = find_free_port();
  LaunchOptions opts;
  opts.num_processes = 2;
  opts.master_port = port;
  const TempDir dir("launcher_failure");
  const auto path = dir / "message.txt";
  auto result = launch_processes(
      [&] {
        if (state().rank() == 0) {
          // Now the port is held by this group's store; a second server fails.
          Topology t = state().topology();
          try {
            connect_store(t, 2s);
          } catch (const RendezvousError& e) {
            std::ofstream(path) << e.what();
          }
        }
        wait_for_everyone();
      },
      opts);
  EXPECT_TRUE(result.ok()) << result.describe();
  const std::string msg = read_file(path);
  EXPECT_NE(msg.find("already in use"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(port)), std::string::npos) << msg;
}
