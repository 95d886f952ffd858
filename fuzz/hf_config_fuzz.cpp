// libFuzzer target: a Hugging Face GPT-2 config.json as the gpt2 example
// reads it (read_hf_config), on arbitrary text. Beyond "no crash" (ASan,
// UBSan): a refusal is std::runtime_error with a message of bounded size;
// an accepted config passes check() (so the model fits this machine), and
// the config.json written for it (hf_config_json) reads back the same.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "gpt2/config.h"

namespace {

namespace fs = std::filesystem;

bool same(const gpt2::GPT2Options& a, const gpt2::GPT2Options& b) {
  return a.n_layer() == b.n_layer() && a.n_head() == b.n_head() && a.n_embd() == b.n_embd() &&
         a.n_positions() == b.n_positions() && a.vocab_size() == b.vocab_size() &&
         a.layer_norm_epsilon() == b.layer_norm_epsilon() && a.initializer_range() == b.initializer_range();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path file = fs::temp_directory_path() / ("accel_hf_fuzz_" + std::to_string(getpid()) + ".json");
  std::ofstream(file, std::ios::binary | std::ios::trunc) << std::string(reinterpret_cast<const char*>(data), size);
  gpt2::GPT2Options options;
  try {
    options = gpt2::read_hf_config(file);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).size() > 2000) std::abort();
    return 0;
  }
  gpt2::check(options);  // throws (a crash here) if read_hf_config let a bad shape through
  std::ofstream(file, std::ios::trunc) << gpt2::hf_config_json(options);
  if (!same(gpt2::read_hf_config(file), options)) std::abort();
  return 0;
}
