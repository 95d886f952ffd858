#include "accel/launch/rendezvous_progress.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "accel/util/check.h"
#include "accel/util/env.h"

namespace accel::launch {
namespace {

using Clock = std::chrono::steady_clock;

// The keys wait_for_all_ranks sets (src/accel/dist/process_group.cpp).
const std::string kArrived = "accel/arrived/";
const std::string kAllArrived = "accel/all_arrived";

// Whether something accepts connections at addr:port within `timeout`. Asked
// before c10d's client is made: its constructor retries (and logs) until its
// own timeout while rank 0 has not started the store yet.
bool port_open(const std::string& addr, int port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return false;
  bool open = false;
  for (addrinfo* a = found; a && !open; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      open = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof error;
      open = ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
             ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return open;
}

}  // namespace

std::string rendezvous_line(const std::string& address, int arrived, int world_size, double seconds,
                            const std::vector<int>& missing) {
  std::string line = str("accel launch: rendezvous at ", address, ": ", arrived, "/", world_size,
                         " ranks arrived after ", static_cast<long long>(seconds), " s");
  if (missing.empty()) return line;
  line += missing.size() == 1 ? " (waiting for rank " : " (waiting for ranks ";
  for (size_t i = 0; i < missing.size() && i < 8; ++i) line += str(i ? ", " : "", missing[i]);
  if (missing.size() > 8) line += ", ...";
  return line + ")";
}

struct RendezvousProgress::Watch {
  std::string addr;
  int port;
  int world_size;
  RendezvousProgressOptions options;
  bool terminal = false;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  bool line_open = false;  // a terminal line drawn without its newline
  bool shown = false;
  std::thread thread;

  void print(const std::string& line, bool last) {
    if (terminal)
      std::fprintf(options.out(), "\r%s\x1b[K%s", line.c_str(), last ? "\n" : "");
    else
      std::fprintf(options.out(), "%s\n", line.c_str());
    std::fflush(options.out());
    line_open = terminal && !last;
    shown = true;
  }

  // Keeps a terminal's last report and moves below it.
  void end_line() {
    if (!line_open) return;
    std::fprintf(options.out(), "\n");
    std::fflush(options.out());
    line_open = false;
  }

  // Sleeps for `d` unless stop() comes first; false when stopping.
  bool sleep(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex);
    wake.wait_for(lock, d, [&] { return stopping; });
    return !stopping;
  }

  void run() {
    const auto start = Clock::now();
    const std::string address = addr + ":" + std::to_string(port);
    c10::intrusive_ptr<c10d::TCPStore> store;
    std::optional<Clock::time_point> last_line;
    int unmarked_polls = 0;
    while (sleep(options.poll())) {
      int arrived = 0;
      std::vector<int> missing;
      try {
        if (!store && port_open(addr, port, std::chrono::milliseconds(500))) {
          c10d::TCPStoreOptions o;
          o.port = static_cast<std::uint16_t>(port);
          o.isServer = false;
          o.waitWorkers = false;
          o.timeout = std::chrono::seconds(2);
          store = c10::make_intrusive<c10d::TCPStore>(addr, o);
        }
        // A store gone (rank 0 ended) is found by a plain connection first:
        // c10d's client would log a warning with a stack trace instead.
        if (store && !port_open(addr, port, std::chrono::milliseconds(500))) return finish(start, address, false);
        if (store) {
          if (store->check({kAllArrived})) return finish(start, address, true);
          for (int r = 0; r < world_size; ++r) {
            if (store->check({kArrived + std::to_string(r)}))
              ++arrived;
            else
              missing.push_back(r);
          }
          // Rank 0 marks itself as soon as it opens the store: a store
          // without the mark for 8 polls is some other program's rendezvous.
          unmarked_polls = arrived == 0 ? unmarked_polls + 1 : 0;
          if (unmarked_polls >= 8) return finish(start, address, false);
        }
      } catch (const std::exception&) {
        return finish(start, address, false);  // the store went away: the job ended
      }
      // Until rank 0 has opened the store and marked it, nothing tells an
      // accel program from one that never opens it: say nothing.
      if (arrived == 0) continue;
      const auto now = Clock::now();
      if (now - start < options.delay()) continue;
      const auto since_line = last_line ? now - *last_line : Clock::duration::max();
      if (terminal || since_line >= options.interval()) {
        std::lock_guard lock(mutex);
        if (stopping) return;
        print(
            rendezvous_line(address, arrived, world_size, std::chrono::duration<double>(now - start).count(), missing),
            false);
        last_line = now;
      }
    }
  }

  // A report was shown: close it with the outcome.
  void finish(Clock::time_point start, const std::string& address, bool all) {
    std::lock_guard lock(mutex);
    if (all && shown)
      print(rendezvous_line(address, world_size, world_size,
                            std::chrono::duration<double>(Clock::now() - start).count(), {}),
            true);
    end_line();
  }
};

RendezvousProgress::RendezvousProgress(std::string addr, int port, int world_size, RendezvousProgressOptions options)
    : watch_(std::make_unique<Watch>()) {
  ACCEL_CHECK_ARG(world_size >= 1, "RendezvousProgress: world_size is ", world_size, ", expected >= 1");
  ACCEL_CHECK_ARG(port >= 1 && port <= 65535, "RendezvousProgress: port is ", port, ", expected 1..65535");
  ACCEL_CHECK_ARG(options.out(), "RendezvousProgress: options.out is null");
  const bool enabled = options.enabled().value_or(!progress_bars_disabled_by_environment(process_env()));
  watch_->addr = std::move(addr);
  watch_->port = port;
  watch_->world_size = world_size;
  watch_->terminal = ::isatty(::fileno(options.out()));
  watch_->options = std::move(options);
  if (enabled) watch_->thread = std::thread([w = watch_.get()] { w->run(); });
}

RendezvousProgress::~RendezvousProgress() { stop(); }

void RendezvousProgress::stop() {
  {
    std::lock_guard lock(watch_->mutex);
    watch_->stopping = true;
  }
  watch_->wake.notify_all();
  if (watch_->thread.joinable()) watch_->thread.join();
  watch_->end_line();
}

}  // namespace accel::launch
