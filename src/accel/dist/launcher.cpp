#include "accel/dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <ATen/Parallel.h>

#include "accel/state.h"
#include "accel/util/check.h"

namespace accel {

int find_free_port(const std::string& addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ACCEL_CHECK(fd >= 0, "socket: ", std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    fail<std::runtime_error>("cannot bind a free port on ", addr, ": ", std::strerror(errno));
  }
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  int port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

GroupResult launch_processes(const std::function<void()>& fn, LaunchOptions options) {
  ACCEL_CHECK_ARG(options.num_processes >= 1, "launch_processes: num_processes must be >= 1, got ",
                  options.num_processes);
  ACCEL_CHECK_STATE(
      !ProcessState::initialized(),
      "launch_processes: this process already created accel::ProcessState; launch before using accel::state()");
  const int port = options.master_port > 0 ? options.master_port : find_free_port(options.master_addr);
  const int n = options.num_processes;
  WorkerGroup group({options.grace, options.timeout});
  for (int rank = 0; rank < n; ++rank) {
    group.fork_worker(rank, [&, rank]() -> int {
      std::map<std::string, std::string> env = {
          {"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(n)},
          {"LOCAL_RANK", std::to_string(rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(n)},
          {"GROUP_RANK", "0"},
          {"GROUP_WORLD_SIZE", "1"},
          {"ROLE_RANK", std::to_string(rank)},
          {"ROLE_WORLD_SIZE", std::to_string(n)},
          {"MASTER_ADDR", options.master_addr},
          {"MASTER_PORT", std::to_string(port)},
      };
      if (options.cpu) env["ACCELERATE_USE_CPU"] = "true";
      if (!std::getenv("OMP_NUM_THREADS")) env["OMP_NUM_THREADS"] = "1";
      for (auto& [k, v] : options.env) env[k] = v;
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      at::set_num_threads(std::max(1, static_cast<int>(std::strtol(std::getenv("OMP_NUM_THREADS"), nullptr, 10))));
      fn();
      ProcessState::shutdown();
      return 0;
    });
  }
  return group.wait();
}

void notebook_launcher(const std::function<void()>& fn, LaunchOptions options) {
  auto result = launch_processes(fn, options);
  if (!result.ok()) throw LaunchError(result.describe(), result);
}

void debug_launcher(const std::function<void()>& fn, int num_processes) {
  LaunchOptions options;
  options.num_processes = num_processes;
  notebook_launcher(fn, options);
}

}  // namespace accel
