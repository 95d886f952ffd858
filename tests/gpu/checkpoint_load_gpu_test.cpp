// load_checkpoint_and_dispatch's reader (big_model/device_loader.h) on a
// GPU: tensors larger than one 8 MiB chunk, read by one or many threads
// through pinned staging to the GPU and to pinned host memory (offloaded),
// with and without a dtype conversion on the device, equal the saved
// values exactly (a conversion equals the CPU's own).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/dispatch.h"
#include "accel/big_model/empty_init.h"
#include "accel/checkpoint/model_files.h"
#include "accel/unit/unit.h"
#include "support/cuda.h"
#include "support/temp_dir.h"

namespace {

torch::nn::Sequential layers() {
  torch::nn::Sequential model;
  model->push_back(torch::nn::Linear(3000, 1100));  // 13.2 MB in fp32: two chunks
  model->push_back(torch::nn::Linear(1100, 17));
  model->push_back(torch::nn::Linear(17, 2900));
  model->push_back(torch::nn::Linear(2900, 3001));  // 34.8 MB: five chunks
  return model;
}

TEST(CheckpointLoadGpu, ChunkedReadsByManyThreadsEqualTheSavedValues) {
  REQUIRE_CUDA();
  accel::testing::TempDir dir;
  torch::manual_seed(3);
  auto reference = layers();
  accel::save_model(*reference, dir.path() / "model", accel::SaveModelOptions().max_shard_size(int64_t{20} << 20));
  const auto expected = reference->named_parameters();
  for (int threads : {1, 8})
    for (std::optional<torch::ScalarType> dtype : {std::optional<torch::ScalarType>(), std::optional(torch::kHalf)}) {
      torch::nn::Sequential model{nullptr};
      {
        accel::InitEmptyWeights scope;
        model = layers();
      }
      accel::Unit<torch::nn::Sequential> root(model);  // so that layer 3 may be offloaded
      accel::load_checkpoint_and_dispatch(
          *model, dir.path() / "model",
          accel::DispatchOptions().device_map({{"", "cuda:0"}, {"3", "cpu"}}).dtype(dtype).read_threads(threads));
      torch::cuda::synchronize();
      for (const auto& p : model->named_parameters()) {
        const auto want = expected[p.key()].to(dtype.value_or(torch::kFloat));
        if (p.key().starts_with("3.")) {
          EXPECT_TRUE(p.value().is_meta()) << p.key();
          continue;
        }
        ASSERT_TRUE(p.value().is_cuda()) << p.key();
        EXPECT_TRUE(torch::equal(p.value().cpu(), want)) << p.key() << " threads " << threads;
      }
      // The offloaded layer runs on the GPU from pinned host memory.
      torch::NoGradGuard no_grad;
      const auto type = dtype.value_or(torch::kFloat);
      const auto h = torch::randn({5, 3000}).to(torch::kCUDA, type);
      auto want = h;
      for (int i = 0; i < 4; ++i)
        want = torch::linear(want, expected[std::to_string(i) + ".weight"].to(torch::kCUDA, type),
                             expected[std::to_string(i) + ".bias"].to(torch::kCUDA, type));
      const auto out = root(h);
      EXPECT_TRUE(out.is_cuda());
      EXPECT_TRUE(torch::allclose(out, want, 1e-3, 1e-3)) << (out - want).abs().max().item<double>();
    }
}

}  // namespace
