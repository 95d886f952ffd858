// libFuzzer target: a DeepSpeed JSON config as accel reads it for its ZeRO
// settings (parse_deepspeed_config), on arbitrary text. Beyond "no crash"
// (ASan, UBSan): every refusal is std::invalid_argument with a message of
// bounded size, whatever the input's size or depth.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "accel/parallel/sharding_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    accel::parse_deepspeed_config(text, "fuzz.json", accel::ShardingConfigContext{});
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).size() > 1000) std::abort();  // a value quoted whole
  }
  return 0;
}
