// libFuzzer target: zero_layout.json, the layout of a sharded (ZeRO)
// checkpoint, on arbitrary text, through both readers: load_state's
// (FlatLayout::from_json) and merge-weights' (merged_zero_weights, in a
// folder with the shard files of 2 ranks, 4 fp32 elements each). Beyond "no
// crash" (ASan, UBSan): refusals are std::runtime_error with a message of
// bounded size, and a merge that is accepted cut every parameter from the
// elements the shard files hold.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/flat_layout.h"

namespace {

namespace fs = std::filesystem;

struct Fixture {
  Fixture() : dir(fs::temp_directory_path() / ("accel_layout_fuzz_" + std::to_string(getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (int r = 0; r < 2; ++r)
      accel::safetensors::save_file({{"group.0.param", torch::arange(4 * r, 4 * r + 4, torch::kFloat)}},
                                    dir / ("zero_shard_rank" + std::to_string(r) + ".safetensors"));
  }
  ~Fixture() { fs::remove_all(dir); }
  fs::path dir;
};

void bounded(const std::exception& e) {
  if (std::string(e.what()).size() > 2000) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    accel::zero::FlatLayout::from_json(text, "'fuzz'");
  } catch (const std::runtime_error& e) {
    bounded(e);
  }
  std::ofstream(f.dir / "zero_layout.json", std::ios::binary | std::ios::trunc) << text;
  try {
    for (const auto& [name, t] : accel::merged_zero_weights(f.dir)) {
      // Every element comes from the 8 the shards hold (0..7), cast to the dtype.
      const auto values = t.to(torch::kFloat);
      if (values.numel() > 8 ||
          (values.numel() > 0 && (values.min().item<float>() < 0 || values.max().item<float>() > 7)))
        std::abort();
    }
  } catch (const std::runtime_error& e) {
    bounded(e);
  }
  return 0;
}
