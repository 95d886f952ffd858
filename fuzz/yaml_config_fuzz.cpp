// libFuzzer target: Accelerate's YAML config as `accel launch`, `env`,
// `test` and `config update` read it (ClusterConfig::parse), on arbitrary
// text. Beyond "no crash" (ASan, UBSan): a refusal is std::invalid_argument
// and nothing else, and a config accepted once is written (to_yaml, what
// `accel config update` saves) as YAML that reads back to the same config.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "accel/launch/cluster_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  accel::launch::ClusterConfig config;
  try {
    config = accel::launch::ClusterConfig::parse(text, "fuzz.yaml");
  } catch (const std::invalid_argument&) {
    return 0;
  }
  const std::string written = config.to_yaml();
  const auto again = accel::launch::ClusterConfig::parse(written, "written");
  if (again.to_yaml() != written) {
    std::fprintf(stderr, "written:\n%s\nread back and written again:\n%s\n", written.c_str(), again.to_yaml().c_str());
    std::abort();
  }
  return 0;
}
