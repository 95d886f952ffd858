#include "support/distributed.h"

#include "accel_test_paths.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>

namespace accel::testing {

void run_distributed(int n, const std::function<void()>& body, LaunchOptions options) {
  options.num_processes = n;
  auto result = launch_processes(
      [&] {
        body();
        if (::testing::Test::HasFailure()) throw std::runtime_error("a test assertion failed in this rank");
      },
      options);
  EXPECT_TRUE(result.ok()) << result.describe();
}

void seed_cpu(uint64_t seed) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
}

std::string command_output(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0) out.append(buf, n);
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string source_path(const std::string& relative) { return std::string(ACCEL_SOURCE_DIR) + "/" + relative; }
std::string binary_path(const std::string& relative) { return std::string(ACCEL_BINARY_DIR) + "/" + relative; }

}  // namespace accel::testing
