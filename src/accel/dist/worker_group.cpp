#include "accel/dist/worker_group.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <thread>

#include "accel/util/check.h"

namespace accel {
namespace {
std::atomic<int> g_stop_signal{0};
constexpr size_t kMaxTimedRanks = 4096;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

extern "C" char** environ;

// The path execve() needs: `program` itself when it has a '/', else the
// first executable match on PATH (resolved before fork, where allocating is safe).
std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    std::string candidate = dir + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate)) return candidate;
    start = end + 1;
  }
  fail<std::runtime_error>("cannot execute '", program, "': not found on PATH");
}
}  // namespace

WorkerGroup::WorkerGroup(WorkerGroupOptions options) : options_(options) {
  // Forked workers write the moment they failed here (shared with the
  // parent), so the group names the rank that failed first, not the peers
  // that failed a moment later because it was gone.
  void* p = mmap(nullptr, kMaxTimedRanks * sizeof(int64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    failure_times_ = static_cast<int64_t*>(p);
    std::fill(failure_times_, failure_times_ + kMaxTimedRanks, int64_t{0});
  }
}

std::string WorkerExit::describe() const {
  std::string who = "rank " + std::to_string(rank);
  if (signal != 0) {
    const char* name = strsignal(signal);
    return who + " was killed by signal " + std::to_string(signal) + " (" + (name ? name : "?") + ")" +
           (stopped_by_us ? " after the group was stopped" : "");
  }
  return who + " exited with status " + std::to_string(exit_code);
}

int GroupResult::exit_status() const {
  if (first_failure) return first_failure->signal ? 128 + first_failure->signal : first_failure->exit_code;
  if (timed_out) return 124;
  if (stop_requested) return 128 + (stop_signal ? stop_signal : SIGINT);
  return 0;
}

std::string GroupResult::describe() const {
  if (first_failure) return "worker failed: " + first_failure->describe();
  if (timed_out) return "workers timed out and were stopped";
  if (stop_requested) return "workers were stopped on request";
  return "all " + std::to_string(exits.size()) + " workers succeeded";
}

WorkerGroup::~WorkerGroup() {
  // Never leave workers behind, even when wait() was not reached.
  kill_running();
  if (failure_times_) munmap(failure_times_, kMaxTimedRanks * sizeof(int64_t));
}

void WorkerGroup::add(int rank, pid_t pid) {
  workers_.emplace_back(rank, pid);
  reaped_.push_back(false);
  own_group_.push_back(false);
}

pid_t WorkerGroup::fork_worker(int rank, const std::function<int()>& body) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  ACCEL_CHECK(pid >= 0, "fork failed: ", std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl took effect
    int code = 1;
    auto record_failure = [&] {
      if (failure_times_ && rank >= 0 && static_cast<size_t>(rank) < kMaxTimedRanks) failure_times_[rank] = now_ns();
    };
    try {
      code = body();
      if (code != 0) record_failure();
    } catch (const std::exception& e) {
      record_failure();
      std::cerr << "[rank " << rank << "] error: " << e.what() << std::endl;
    } catch (...) {
      record_failure();
      std::cerr << "[rank " << rank << "] error: unknown exception" << std::endl;
    }
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    _exit(code);
  }
  add(rank, pid);
  return pid;
}

pid_t WorkerGroup::spawn(int rank, const WorkerCommand& command) {
  ACCEL_CHECK_ARG(!command.argv.empty(), "WorkerGroup::spawn: empty command");
  const std::string path = resolve_program(command.argv[0]);
  // Everything the child needs is built here: after fork, in a process with
  // threads, only async-signal-safe calls are allowed.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && command.env.count(kv.substr(0, eq))) continue;
    env_strings.push_back(std::move(kv));
  }
  for (auto& [k, v] : command.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = command.argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) fail<std::runtime_error>("pipe failed: ", std::strerror(errno));
  std::fflush(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(err_pipe[0]);
    close(err_pipe[1]);
    fail<std::runtime_error>("fork failed: ", std::strerror(errno));
  }
  if (pid == 0) {
    // Its own session and process group, as torchrun gives a worker: the
    // launcher stops the worker and every process it started with one
    // kill(-pid), and a terminal's Ctrl-C reaches the launcher only, which
    // forwards it.
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    if (command.stdout_fd >= 0) dup2(command.stdout_fd, STDOUT_FILENO);
    if (command.stderr_fd >= 0) dup2(command.stderr_fd, STDERR_FILENO);
    execve(path.c_str(), argv.data(), envp.data());
    int err = errno;
    (void)!write(err_pipe[1], &err, sizeof err);
    _exit(127);
  }
  close(err_pipe[1]);
  int err = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == sizeof err) {
    waitpid(pid, nullptr, 0);
    fail<std::runtime_error>("cannot execute '", command.argv[0], "': ", std::strerror(err));
  }
  add(rank, pid);
  own_group_.back() = true;
  return pid;
}

void WorkerGroup::request_stop(int sig) { g_stop_signal.store(sig); }

bool WorkerGroup::stop_pending() { return g_stop_signal.load() != 0; }

void WorkerGroup::signal(size_t i, int sig) {
  // A spawned worker leads its own process group: the signal reaches its
  // children too, also after the worker itself exited: the group's members
  // keep its id taken (no new process gets that pid while they live), and
  // an empty group is ESRCH.
  const pid_t pid = workers_[i].second;
  if (own_group_[i] && kill(-pid, sig) == 0) return;
  if (!reaped_[i]) kill(pid, sig);
}

void WorkerGroup::kill_running() {
  for (size_t i = 0; i < workers_.size(); ++i)
    if (!reaped_[i]) {
      signal(i, SIGKILL);
      waitpid(workers_[i].second, nullptr, 0);
      reaped_[i] = true;
    }
}

GroupResult WorkerGroup::wait() {
  GroupResult result;
  result.exits.resize(workers_.size());
  for (size_t i = 0; i < workers_.size(); ++i) result.exits[i].rank = workers_[i].first;
  auto start = std::chrono::steady_clock::now();
  bool stopping = false;
  std::vector<int64_t> failed_at(workers_.size(), 0);
  // A rank that dies by a signal records no time of its own; the earliest it
  // can have died is the previous check that still found it alive. Using that
  // bound (not the reap time) keeps a SIGKILLed rank ahead of the peers that
  // fail later only because its connections were reset.
  int64_t previous_check = now_ns();
  // SIGKILL is the one signal the launcher sends only at the end (after the
  // grace period); a worker ended by it before then was killed from outside
  // (the OOM killer, kill -9, a preemption), never as a reaction to a peer.
  // Its teardown can outlast its peers' reaction to its reset sockets on a
  // loaded machine, so it may be found after them, even after the stop has
  // begun: it is still the first failure, and not one the launcher caused.
  bool escalated = false;
  // An exited worker is left a zombie (WNOWAIT) until wait() returns: its
  // pid, the id of its process group, cannot be reused meanwhile, so
  // signalling the group of a worker that already exited reaches only the
  // processes it left behind.
  auto reap = [&](bool blocking) {
    int64_t this_check = now_ns();
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (reaped_[i]) continue;
      siginfo_t info{};
      const int r =
          waitid(P_PID, static_cast<id_t>(workers_[i].second), &info, WEXITED | WNOWAIT | (blocking ? 0 : WNOHANG));
      if (r == 0 && info.si_pid == 0) continue;  // still running
      reaped_[i] = true;
      auto& e = result.exits[i];
      if (r != 0) {
        e.exit_code = 255;
      } else if (info.si_code == CLD_EXITED) {
        e.exit_code = info.si_status;
      } else {
        e.signal = info.si_status;
      }
      const bool killed_from_outside = e.signal == SIGKILL && !escalated;
      e.stopped_by_us = stopping && !killed_from_outside;
      failed_at[i] = killed_from_outside ? 0 : previous_check;
      if (failure_times_ && e.rank >= 0 && static_cast<size_t>(e.rank) < kMaxTimedRanks && failure_times_[e.rank])
        failed_at[i] = failure_times_[e.rank];
      if (!e.ok() && !e.stopped_by_us && !result.first_failure) result.first_failure = e;
    }
    previous_check = this_check;
  };
  while (true) {
    reap(false);
    bool all = true;
    for (bool r : reaped_) all = all && r;
    int sig = g_stop_signal.exchange(0);
    if (all) {
      // A stop that came while the workers were starting (or as the last
      // one ended) is still a stop: the job did not run to its end.
      result.stop_requested = sig != 0;
      result.stop_signal = sig;
      break;
    }
    bool timed_out = options_.timeout.count() > 0 && std::chrono::steady_clock::now() - start > options_.timeout;
    if (result.first_failure || sig || timed_out) {
      result.stop_requested = sig != 0;
      result.stop_signal = sig;
      result.timed_out = timed_out;
      stopping = true;
      // Forward the requested signal (SIGINT/SIGTERM) or stop with SIGTERM,
      // then escalate to SIGKILL after the grace period.
      // Every running worker, and the process group of every spawned one
      // that already exited (the failed rank's children are still there).
      std::vector<bool> signalled(workers_.size());
      for (size_t i = 0; i < workers_.size(); ++i)
        if (!reaped_[i] || own_group_[i]) {
          signal(i, sig ? sig : SIGTERM);
          signalled[i] = true;
        }
      auto deadline = std::chrono::steady_clock::now() + options_.grace;
      while (std::chrono::steady_clock::now() < deadline) {
        reap(false);
        bool done = true;
        for (bool r : reaped_) done = done && r;
        if (done) break;
        std::this_thread::sleep_for(options_.poll);
      }
      // Also the groups of workers that exited in the grace period: their
      // children may ignore SIGTERM.
      escalated = true;
      for (size_t i = 0; i < workers_.size(); ++i)
        if (signalled[i]) signal(i, SIGKILL);
      reap(true);
      break;
    }
    std::this_thread::sleep_for(options_.poll);
  }
  for (const auto& [rank, pid] : workers_) waitpid(pid, nullptr, 0);  // the zombies
  // Several ranks may have failed within one poll: name the earliest.
  for (size_t i = 0; i < workers_.size(); ++i) {
    auto& e = result.exits[i];
    if (e.ok() || e.stopped_by_us || !result.first_failure) continue;
    size_t j = 0;
    while (result.exits[j].rank != result.first_failure->rank) ++j;
    if (failed_at[i] < failed_at[j]) result.first_failure = e;
  }
  return result;
}

}  // namespace accel
