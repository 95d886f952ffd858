// Big-model dispatch on a GPU (big_model/dispatch.h): a model split across
// the GPU, pinned CPU memory and the disk computes what it computes on one
// device; tensors mapped to the GPU are read straight to it; offloaded units
// come back to the meta device after each forward, and the side-stream
// prefetch (after the first forward) changes nothing in the result.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/dispatch.h"
#include "accel/big_model/empty_init.h"
#include "accel/big_model/hooks.h"
#include "accel/checkpoint/model_files.h"
#include "support/cuda.h"
#include "support/device_map_model.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::MapBlock;
using accel::testing::MapLM;

struct SavedModel {
  accel::testing::TempDir dir;
  MapLM reference{nullptr};
  torch::Tensor tokens;
  SavedModel() {
    torch::manual_seed(11);
    reference = MapLM(1000, 64, 128, 6);
    reference->eval();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : reference->parameters()) p.normal_(0, 0.2);
    }
    accel::save_model(*reference, dir.path() / "model", accel::SaveModelOptions().max_shard_size(int64_t{150'000}));
    tokens = torch::randint(0, 1000, {2, 11});
  }
};

TEST(DispatchGpu, GpuCpuAndDiskEqualOneGpu) {
  REQUIRE_CUDA();
  SavedModel saved;
  torch::NoGradGuard no_grad;
  saved.reference->to(torch::kCUDA);
  const auto expected = saved.reference->forward(saved.tokens.cuda()).cpu();

  auto model = accel::init_empty_weights([] { return MapLM(1000, 64, 128, 6); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");
  const accel::DeviceMap map = {{"", "cuda:0"},
                                {"transformer.h.1", "cpu"},
                                {"transformer.h.2", "cpu"},
                                {"transformer.h.3", "disk"},
                                {"transformer.h.4", "cpu"},
                                {"lm_head.proj", "disk"}};
  const auto dispatched =
      accel::load_checkpoint_and_dispatch(*model, saved.dir.path() / "model", accel::DispatchOptions().device_map(map));
  EXPECT_EQ(dispatched.main_device, c10::Device("cuda:0"));
  auto block = [&](int i) { return model->transformer->h[i]->as<MapBlock>(); };
  EXPECT_TRUE(block(0)->mlp->c_fc->weight.is_cuda());
  EXPECT_TRUE(block(1)->mlp->c_fc->weight.is_meta());
  EXPECT_TRUE(model->transformer->wte->weight.is_cuda());
  // Three calls: the first learns the unit order, the next ones prefetch.
  // Inputs on the CPU come back as CPU outputs (the model is a unit).
  for (int call = 0; call < 3; ++call) {
    const auto out = root(saved.tokens);
    EXPECT_TRUE(out.is_cpu());
    EXPECT_LT((out - expected).abs().max().item<double>(), 1e-5) << "call " << call;
    EXPECT_TRUE(block(2)->attn->c_attn->weight.is_meta());
    EXPECT_TRUE(block(3)->attn->c_attn->weight.is_meta());
  }
  accel::remove_hook_from_units(*model);
}

// The model is not a unit: the first and last blocks are offloaded, so the
// last block prefetches the first one for the next call (the order taken
// as a cycle); each call still equals the model on one GPU.
TEST(DispatchGpu, LastUnitPrefetchesTheFirstForTheNextCall) {
  REQUIRE_CUDA();
  SavedModel saved;
  torch::NoGradGuard no_grad;
  saved.reference->to(torch::kCUDA);
  const auto tokens = saved.tokens.cuda();
  const auto expected = saved.reference->forward(tokens);
  auto model = accel::init_empty_weights([] { return MapLM(1000, 64, 128, 6); });
  model->eval();
  accel::load_checkpoint_and_dispatch(
      *model, saved.dir.path() / "model",
      accel::DispatchOptions().device_map(
          {{"", "cuda:0"}, {"transformer.h.0", "cpu"}, {"transformer.h.3", "cpu"}, {"transformer.h.5", "cpu"}}));
  for (int call = 0; call < 4; ++call) {
    const auto out = model->forward(tokens);
    EXPECT_LT((out - expected).abs().max().item<double>(), 1e-5) << "call " << call;
    EXPECT_TRUE(model->transformer->h[0]->as<MapBlock>()->mlp->c_fc->weight.is_meta());
  }
  accel::remove_hook_from_units(*model);
}

TEST(DispatchGpu, AutoMapWithASmallGpuBudget) {
  REQUIRE_CUDA();
  SavedModel saved;
  torch::NoGradGuard no_grad;
  const auto expected = saved.reference->forward(saved.tokens);
  auto model = accel::init_empty_weights([] { return MapLM(1000, 64, 128, 6); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");
  const auto dispatched = accel::load_checkpoint_and_dispatch(
      *model, saved.dir.path() / "model",
      accel::DispatchOptions().max_memory({{"0", 700'000}, {"cpu", "1GB"}}).no_split_module_classes({"GPT2Block"}));
  bool gpu = false, cpu = false;
  for (const auto& [name, device] : dispatched.device_map) {
    gpu = gpu || device == "cuda:0";
    cpu = cpu || device == "cpu";
  }
  EXPECT_TRUE(gpu && cpu) << "expected a map over cuda:0 and the CPU";
  for (int call = 0; call < 2; ++call)
    EXPECT_LT((root(saved.tokens) - expected).abs().max().item<double>(), 1e-5) << "call " << call;
}

TEST(DispatchGpu, CpuOffloadToTheGpuWithHalfPrecisionLoad) {
  REQUIRE_CUDA();
  SavedModel saved;
  torch::NoGradGuard no_grad;
  auto reference = MapLM(1000, 64, 128, 6);
  reference->eval();
  {
    auto from = saved.reference->named_parameters();
    for (auto& p : reference->named_parameters()) p.value().copy_(from[p.key()]);
  }
  reference->to(torch::kCUDA, torch::kHalf);
  const auto expected = reference->forward(saved.tokens.cuda());

  auto model = accel::init_empty_weights([] { return MapLM(1000, 64, 128, 6); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");
  accel::load_checkpoint_and_dispatch(
      *model, saved.dir.path() / "model",
      accel::DispatchOptions().device_map({{"", "cuda:0"}, {"transformer.h", "cpu"}}).dtype(torch::kHalf));
  EXPECT_EQ(model->transformer->wte->weight.scalar_type(), torch::kHalf);
  const auto out = root(saved.tokens.cuda());
  EXPECT_TRUE(out.is_cuda());
  EXPECT_LT((out - expected).abs().max().item<double>(), 1e-3);
}

}  // namespace
