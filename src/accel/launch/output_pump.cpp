#include "accel/launch/output_pump.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "accel/util/check.h"

namespace accel::launch {
namespace {

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

OutputPump::OutputPump(int tee, std::string log_dir, int attempt) : tee_(tee) {
  if (!log_dir.empty()) dir_ = (std::filesystem::path(log_dir) / ("attempt_" + std::to_string(attempt))).string();
}

OutputPump::~OutputPump() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& s : streams_) {
    if (s.fd_read >= 0) close(s.fd_read);
    if (s.fd_write >= 0) close(s.fd_write);
    if (s.file >= 0) close(s.file);
  }
}

std::pair<int, int> OutputPump::add_rank(int rank) {
  int fds[2] = {-1, -1};
  for (int which = 1; which <= 2; ++which) {
    const bool to_console = tee_ & which;
    if (!to_console && dir_.empty()) continue;  // inherit the launcher's stream
    Stream s;
    s.rank = rank;
    if (to_console) s.console = which;
    if (!dir_.empty()) {
      auto folder = std::filesystem::path(dir_) / std::to_string(rank);
      std::filesystem::create_directories(folder);
      auto file = folder / (which == 1 ? "stdout.log" : "stderr.log");
      s.file = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ACCEL_CHECK(s.file >= 0, "cannot write log file ", file.string(), ": ", std::strerror(errno));
    }
    int p[2];
    const bool piped = pipe2(p, O_CLOEXEC) == 0;
    ACCEL_CHECK(piped, "pipe failed: ", std::strerror(errno));
    s.fd_read = p[0];
    s.fd_write = p[1];
    fds[which - 1] = p[1];
    streams_.push_back(std::move(s));
  }
  return {fds[0], fds[1]};
}

void OutputPump::start() {
  for (auto& s : streams_) {
    close(s.fd_write);
    s.fd_write = -1;
  }
  if (!streams_.empty()) thread_ = std::thread([this] { run(); });
}

void OutputPump::emit(Stream& s, const char* data, size_t n, bool eof) {
  if (s.file >= 0 && n > 0) write_all(s.file, data, n);
  if (s.console < 0) return;
  const std::string prefix = "[rank" + std::to_string(s.rank) + "]:";
  std::string out;
  // Writes the held part of the line and `piece` of the new data.
  auto pass_on = [&](const char* piece, size_t size) {
    if (!s.mid_line) out += prefix;
    out += s.partial;
    out.append(piece, size);
    s.partial.clear();
  };
  // Only the new bytes are searched for newlines: the held part has none.
  size_t start = 0;
  while (const void* nl = n > start ? std::memchr(data + start, '\n', n - start) : nullptr) {
    const size_t end = static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
    pass_on(data + start, end - start);
    s.mid_line = false;
    start = end;
  }
  s.partial.append(data + start, n - start);
  if (s.partial.size() >= kMaxHeldLine) {
    pass_on("", 0);
    s.mid_line = true;
  }
  if (eof && (s.mid_line || !s.partial.empty())) {
    pass_on("\n", 1);
    s.mid_line = false;
  }
  if (!out.empty()) write_all(s.console, out.data(), out.size());
}

void OutputPump::run() {
  char buf[65536];
  auto quiet_since = std::chrono::steady_clock::now();
  while (true) {
    std::vector<pollfd> fds;
    std::vector<Stream*> owners;
    for (auto& s : streams_)
      if (s.fd_read >= 0) {
        fds.push_back({s.fd_read, POLLIN, 0});
        owners.push_back(&s);
      }
    if (fds.empty()) return;
    int r = poll(fds.data(), fds.size(), 50);
    if (r < 0 && errno != EINTR) return;
    if (r > 0) quiet_since = std::chrono::steady_clock::now();
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Stream& s = *owners[i];
      ssize_t n = read(s.fd_read, buf, sizeof buf);
      if (n > 0) {
        emit(s, buf, static_cast<size_t>(n), false);
      } else if (n == 0 || errno != EINTR) {
        emit(s, buf, 0, true);
        close(s.fd_read);
        s.fd_read = -1;
      }
    }
    if (stop_ && std::chrono::steady_clock::now() - quiet_since > std::chrono::milliseconds(500)) {
      for (auto& s : streams_)
        if (s.fd_read >= 0) emit(s, buf, 0, true);
      return;
    }
  }
}

void OutputPump::finish() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace accel::launch
