// `accel env`: what a bug report needs, in copy-paste form.
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <torch/cuda.h>
#include <torch/version.h>

#include "commands.h"

namespace accel::cli {
namespace {

std::string os_name() {
  std::ifstream f("/etc/os-release");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      auto v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  return "unknown";
}

void run_env() {
  utsname u{};
  uname(&u);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  std::ostringstream s;
  s << "- accel version: " << version() << "\n"
    << "- LibTorch version: " << TORCH_VERSION << "\n"
    << "- Compiler: " << __VERSION__ << "\n"
    << "- OS: " << os_name() << " (" << u.sysname << " " << u.release << ", " << u.machine << ")\n"
    << "- CPU cores: " << sysconf(_SC_NPROCESSORS_ONLN) << "\n"
    << "- System RAM: " << (pages * page) / (1024.0 * 1024 * 1024) << " GiB\n"
    << "- CUDA available: " << (torch::cuda::is_available() ? "yes" : "no") << "\n"
    << "- GPUs: " << static_cast<int>(torch::cuda::device_count()) << "\n";
  std::cout << s.str();
}

}  // namespace

void register_env(CLI::App& app) {
  auto* cmd = app.add_subcommand("env", "Print versions, devices and the active config for bug reports");
  cmd->callback([] { run_env(); });
}

}  // namespace accel::cli
