// `accel env`: what a bug report needs, in copy-paste form.
#include <dlfcn.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "accel/launch/cluster_config.h"
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

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

// "12.8" from 12080; "9.10.2" from 91002 (cuDNN >= 9) or 8902 (cuDNN 8).
std::string cuda_version(long v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version(long v) {
  if (v >= 10000)
    return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 100) + "." + std::to_string(v % 100);
}

// NCCL and the driver API are found in the loaded libraries: no CUDA headers needed.
std::string nccl_version() {
  using Fn = int (*)(int*);
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "ncclGetVersion"));
  int v = 0;
  if (!fn || fn(&v) != 0) return "not available";
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}

std::string gpu_list(int count) {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!lib) return "";
  using Init = int (*)(unsigned);
  using Get = int (*)(int*, int);
  using Name = int (*)(char*, int, int);
  using Mem = int (*)(size_t*, int);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
  auto name = reinterpret_cast<Name>(dlsym(lib, "cuDeviceGetName"));
  auto mem = reinterpret_cast<Mem>(dlsym(lib, "cuDeviceTotalMem_v2"));
  std::ostringstream s;
  if (init && get && name && mem && init(0) == 0)
    for (int i = 0; i < count; ++i) {
      int dev = 0;
      char buf[256] = {0};
      size_t bytes = 0;
      if (get(&dev, i) != 0 || name(buf, sizeof buf, dev) != 0 || mem(&bytes, dev) != 0) continue;
      s << "  - GPU " << i << ": " << buf << ", " << bytes / (1024.0 * 1024 * 1024) << " GiB\n";
    }
  return s.str();
}

void run_env() {
  utsname u{};
  uname(&u);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const auto& hooks = at::detail::getCUDAHooks();
  std::string cuda = "not available", cudnn = "not available";
  try {
    // The version LibTorch was built with: known without a GPU.
    long v = hooks.versionCUDART();
    if (v > 0) cuda = cuda_version(v);
  } catch (const std::exception&) {
  }
  try {
    if (hooks.hasCuDNN()) cudnn = cudnn_version(hooks.versionCuDNN());
  } catch (const std::exception&) {
  }
  std::ostringstream s;
  s << "\nCopy-and-paste the text below in your GitHub issue\n\n"
    << "- accel version: " << version() << "\n"
    << "- LibTorch version: " << TORCH_VERSION << "\n"
    << "- CUDA runtime: " << cuda << "\n"
    << "- cuDNN: " << cudnn << "\n"
    << "- NCCL: " << nccl_version() << "\n"
    << "- Compiler: g++ " << __VERSION__ << "\n"
    << "- OS: " << os_name() << " (" << u.sysname << " " << u.release << ", " << u.machine << ")\n"
    << "- CPU: " << cpu_model() << ", " << sysconf(_SC_NPROCESSORS_ONLN) << " cores\n"
    << "- System RAM: " << (pages * page) / (1024.0 * 1024 * 1024) << " GiB\n"
    << "- GPUs: " << gpus << "\n"
    << gpu_list(gpus);
  const std::string path = launch::default_config_path();
  s << "- accel default config (" << path << "):";
  if (!std::filesystem::exists(path)) {
    s << " Not found\n";
  } else {
    s << "\n";
    try {
      std::istringstream yaml(launch::ClusterConfig::load(path).to_yaml());
      std::string line;
      while (std::getline(yaml, line)) s << "\t- " << line << "\n";
    } catch (const std::exception& e) {
      s << "\t(cannot be read: " << e.what() << ")\n";
    }
  }
  std::cout << s.str();
}

}  // namespace

void register_env(CLI::App& app) {
  auto* cmd = app.add_subcommand("env", "Print versions, devices and the active config for bug reports");
  cmd->callback([] { run_env(); });
}

}  // namespace accel::cli
