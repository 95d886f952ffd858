// load_checkpoint_and_dispatch, dispatch_model, cpu_offload, disk_offload
// and user hooks (big_model/dispatch.h, hooks.h), without a GPU: a model
// split across the CPU and "disk" computes exactly what the model on one
// device computes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <regex>

#include "accel/big_model/dispatch.h"
#include "accel/big_model/empty_init.h"
#include "accel/big_model/hooks.h"
#include "accel/checkpoint/model_files.h"
#include "support/device_map_model.h"
#include "support/errors.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_error;
using accel::testing::MapLM;
namespace fs = std::filesystem;

// A reference model with random weights, saved in shards of 100 KB.
struct Saved {
  accel::testing::TempDir dir;
  MapLM reference{nullptr};
  torch::Tensor tokens;
  Saved() {
    torch::manual_seed(7);
    reference = MapLM();
    reference->eval();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : reference->parameters()) p.normal_(0, 0.2);
    }
    const auto saved =
        accel::save_model(*reference, dir.path() / "model", accel::SaveModelOptions().max_shard_size(int64_t{100'000}));
    EXPECT_GE(saved.files.size(), 4u);
    tokens = torch::randint(0, 1000, {2, 9});
  }
  fs::path folder() const { return dir.path() / "model"; }
  torch::Tensor expected() {
    torch::NoGradGuard no_grad;
    return reference->forward(tokens);
  }
};

const accel::DeviceMap kCpuAndDisk = {{"", "cpu"},
                                      {"transformer.h.1", "disk"},
                                      {"transformer.h.2", "disk"},
                                      {"transformer.h.3.mlp", "disk"},
                                      {"lm_head", "disk"}};

TEST(Dispatch, CpuAndDiskEqualOneDevice) {
  Saved saved;
  auto model = accel::init_empty_weights([] { return MapLM(); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");  // the model's own tensors (lm_head) may then be offloaded
  const auto dispatched =
      accel::load_checkpoint_and_dispatch(*model, saved.folder(), accel::DispatchOptions().device_map(kCpuAndDisk));
  EXPECT_EQ(dispatched.main_device, c10::Device(torch::kCPU));
  EXPECT_EQ(dispatched.device_map, kCpuAndDisk);
  // Disk-mapped tensors wait on the meta device; the others hold their values.
  EXPECT_TRUE(model->transformer->h[1]->as<accel::testing::MapBlock>()->mlp->c_fc->weight.is_meta());
  EXPECT_TRUE(model->lm_head->proj->weight.is_meta());
  EXPECT_TRUE(model->transformer->h[0]->as<accel::testing::MapBlock>()->mlp->c_fc->weight.is_cpu());
  EXPECT_TRUE(model->lm_head->decoder->weight.is_cpu());  // tied to the resident token embedding

  torch::NoGradGuard no_grad;
  const auto expected = saved.expected();
  for (int call = 0; call < 2; ++call) {
    EXPECT_TRUE(torch::equal(root(saved.tokens), expected)) << "call " << call;
    EXPECT_TRUE(model->transformer->h[2]->as<accel::testing::MapBlock>()->attn->c_attn->weight.is_meta());
  }
  accel::remove_hook_from_units(*model);
  EXPECT_TRUE(accel::hooks_of(*model->transformer->blocks[1].slot()).empty());
}

TEST(Dispatch, ModelThatIsNotAUnitKeepsItsOwnTensorsResident) {
  Saved saved;
  auto model = accel::init_empty_weights([] { return MapLM(); });
  model->eval();
  // lm_head runs in the model's own forward: offloading it is refused by name.
  expect_error<std::invalid_argument>(
      [&] {
        accel::load_checkpoint_and_dispatch(*model, saved.folder(), accel::DispatchOptions().device_map(kCpuAndDisk));
      },
      {"'lm_head.proj.weight'", "disk", "accel::Unit"});
  auto map = kCpuAndDisk;
  map.erase("lm_head");
  auto fresh = accel::init_empty_weights([] { return MapLM(); });
  fresh->eval();
  const auto dispatched =
      accel::load_checkpoint_and_dispatch(*fresh, saved.folder(), accel::DispatchOptions().device_map(map));
  EXPECT_EQ(dispatched.root_device, c10::Device(torch::kCPU));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward(saved.tokens), saved.expected()));
}

TEST(Dispatch, DtypeIsConvertedOnTheWay) {
  Saved saved;
  auto model = accel::init_empty_weights([] { return MapLM(); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");
  accel::load_checkpoint_and_dispatch(*model, saved.folder(),
                                      accel::DispatchOptions().device_map(kCpuAndDisk).dtype(torch::kDouble));
  EXPECT_EQ(model->transformer->wte->weight.scalar_type(), torch::kDouble);
  EXPECT_EQ(model->transformer->h[0]->as<accel::testing::MapBlock>()->attn->mask.scalar_type(), torch::kBool);
  EXPECT_EQ(model->position_ids.scalar_type(), torch::kLong);
  torch::NoGradGuard no_grad;
  saved.reference->to(torch::kDouble);
  EXPECT_TRUE(torch::equal(root(saved.tokens), saved.expected()));
}

// Tensors over one 8 MiB chunk, read by one or several threads, with and
// without a conversion, equal the saved values exactly.
TEST(Dispatch, ChunkedReadsByManyThreadsEqualTheSavedValues) {
  accel::testing::TempDir dir;
  torch::manual_seed(3);
  auto make = [] {
    return torch::nn::Sequential(torch::nn::Linear(3000, 1100), torch::nn::Linear(1100, 3), torch::nn::Linear(3, 700));
  };
  auto reference = make();
  accel::save_model(*reference, dir.path() / "model", accel::SaveModelOptions().max_shard_size(int64_t{10} << 20));
  const auto expected = reference->named_parameters();
  for (int threads : {1, 3, 8})
    for (auto dtype : {std::optional<torch::ScalarType>(), std::optional(torch::kBFloat16)}) {
      torch::nn::Sequential model{nullptr};
      {
        accel::InitEmptyWeights scope;
        model = make();
      }
      accel::load_checkpoint_and_dispatch(
          *model, dir.path() / "model",
          accel::DispatchOptions().device_map({{"", "cpu"}}).dtype(dtype).read_threads(threads));
      for (const auto& p : model->named_parameters())
        EXPECT_TRUE(torch::equal(p.value(), expected[p.key()].to(dtype.value_or(torch::kFloat))))
            << p.key() << ", " << threads << " threads";
    }
  torch::nn::Sequential model{nullptr};
  {
    accel::InitEmptyWeights scope;
    model = make();
  }
  expect_error<std::invalid_argument>(
      [&] {
        accel::load_checkpoint_and_dispatch(*model, dir.path() / "model",
                                            accel::DispatchOptions().device_map({{"", "cpu"}}).read_threads(0));
      },
      {"read_threads is 0", "at least 1"});
}

TEST(Dispatch, AutoMapUnderABudget) {
  Saved saved;
  auto model = accel::init_empty_weights([] { return MapLM(); });
  model->eval();
  accel::Unit<MapLM> root(model, "MapLM");
  const auto dispatched = accel::load_checkpoint_and_dispatch(
      *model, saved.folder(),
      accel::DispatchOptions().max_memory({{"cpu", 700'000}}).no_split_module_classes({"GPT2Block"}));
  int on_disk = 0;
  for (const auto& [name, device] : dispatched.device_map) on_disk += device == "disk";
  EXPECT_GT(on_disk, 0);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(root(saved.tokens), saved.expected()));
}

TEST(Dispatch, CheckpointThatDoesNotMatchIsNamed) {
  Saved saved;
  auto state = accel::model_state(*saved.reference);
  std::erase_if(state, [](const auto& kv) { return kv.first == "transformer.h.2.ln_1.bias" || kv.first == "scale"; });
  state.emplace_back("transformer.h.9.extra", torch::zeros({3}));
  accel::save_model(state, saved.dir.path() / "bad");
  auto model = accel::init_empty_weights([] { return MapLM(); });
  expect_error<std::invalid_argument>(
      [&] {
        accel::load_checkpoint_and_dispatch(*model, saved.dir.path() / "bad",
                                            accel::DispatchOptions().device_map({{"", "cpu"}}));
      },
      {"missing", "scale", "transformer.h.2.ln_1.bias", "unexpected transformer.h.9.extra"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::load_checkpoint_and_dispatch(
            *model, saved.folder(), accel::DispatchOptions().device_map({{"", "cpu"}, {"transformer.h.8", "disk"}}));
      },
      {"'transformer.h.8'"});
}

TEST(Dispatch, CpuAndDiskOffloadThenRemoval) {
  for (const bool disk : {false, true}) {
    SCOPED_TRACE(disk ? "disk_offload" : "cpu_offload");
    Saved saved;
    torch::NoGradGuard no_grad;
    const auto expected = saved.expected();
    accel::Unit<MapLM> root(saved.reference, "MapLM");
    if (disk) {
      accel::disk_offload(*saved.reference, saved.dir.path() / "offload", torch::kCPU);
      EXPECT_TRUE(fs::exists(saved.dir.path() / "offload" / "offload.safetensors"));
    } else {
      accel::cpu_offload(*saved.reference, torch::kCPU);
    }
    for (const auto& p : saved.reference->parameters()) EXPECT_TRUE(p.is_meta());
    EXPECT_TRUE(torch::equal(root(saved.tokens), expected));
    EXPECT_TRUE(saved.reference->transformer->wpe->weight.is_meta());
    accel::remove_hook_from_units(*saved.reference);
    for (const auto& p : saved.reference->parameters()) EXPECT_TRUE(p.is_cpu());
    EXPECT_TRUE(torch::equal(saved.reference->forward(saved.tokens), expected));
  }
}

// Counts calls and doubles the unit's output.
struct Doubling : accel::ModelHook {
  int initialised = 0, calls = 0, detached = 0;
  std::vector<int64_t> seen;
  void init_hook(torch::nn::Module&) override { ++initialised; }
  void pre_forward(torch::nn::Module&, std::vector<torch::Tensor>& inputs) override {
    ++calls;
    seen.push_back(static_cast<int64_t>(inputs.size()));
  }
  void post_forward(torch::nn::Module&, std::vector<torch::Tensor>& outputs) override {
    for (auto& t : outputs) t = t * 2;
  }
  void detach_hook(torch::nn::Module&) override { ++detached; }
};

TEST(Dispatch, UserHooksRunInOrderAndComeOff) {
  torch::manual_seed(0);
  accel::Unit<torch::nn::Linear> unit(torch::nn::Linear(3, 3));
  const auto x = torch::randn({2, 3});
  const auto plain = unit(x);
  auto first = std::make_shared<Doubling>();
  auto second = std::make_shared<Doubling>();
  accel::add_hook_to_unit(*unit.slot(), first);
  accel::add_hook_to_unit(*unit.slot(), second, /*append=*/true);
  EXPECT_EQ(accel::hooks_of(*unit.slot()).size(), 2u);
  EXPECT_TRUE(torch::allclose(unit(x), plain * 4));
  EXPECT_EQ(first->calls, 1);
  EXPECT_EQ(second->seen, std::vector<int64_t>{1});
  // Without append the hooks there are replaced (and detached).
  auto third = std::make_shared<Doubling>();
  accel::add_hook_to_unit(*unit.slot(), third);
  EXPECT_EQ(first->detached, 1);
  EXPECT_EQ(second->detached, 1);
  EXPECT_TRUE(torch::allclose(unit(x), plain * 2));
  accel::remove_hook_from_unit(*unit.slot());
  EXPECT_EQ(third->detached, 1);
  EXPECT_TRUE(torch::equal(unit(x), plain));
  expect_error<std::invalid_argument>([&] { accel::add_hook_to_unit(*unit.slot(), nullptr); }, {"null"});
}

// A hook that replaces the inputs (as a device move does) gives the block
// the new tensors and leaves the caller's own variable as it was.
struct InputNegating : accel::ModelHook {
  void pre_forward(torch::nn::Module&, std::vector<torch::Tensor>& inputs) override {
    for (auto& t : inputs) t = -t;
  }
  void post_forward(torch::nn::Module&, std::vector<torch::Tensor>&) override {}
};

TEST(Dispatch, ReplacedInputsReachTheBlockNotTheCallersVariable) {
  torch::manual_seed(0);
  accel::Unit<torch::nn::Linear> unit(torch::nn::Linear(3, 3));
  auto x = torch::randn({2, 3});  // a non-const variable: the unit may bind it by reference
  const auto before = x.clone();
  const auto want = unit(-x);
  accel::add_hook_to_unit(*unit.slot(), std::make_shared<InputNegating>());
  for (int call = 0; call < 2; ++call) {
    EXPECT_TRUE(torch::equal(unit(x), want)) << "call " << call;
    EXPECT_TRUE(torch::equal(x, before)) << "call " << call;
  }
  accel::remove_hook_from_unit(*unit.slot());
}

// --- Host memory while loading -------------------------------------------

int64_t status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string k;
  while (status >> k) {
    if (k == key) {
      int64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, k);
  }
  return -1;
}

// Run by LoadHoldsAtMostAShardBeyondWhatStaysOnTheCpu in a process of its
// own (ACCEL_LOAD_CHILD names the checkpoint): prints the peak growth of
// resident memory during the load and the bytes the map keeps in memory.
TEST(DispatchMemory, DISABLED_LoadChild) {
  const char* folder = std::getenv("ACCEL_LOAD_CHILD");
  if (!folder) GTEST_SKIP() << "run by DispatchMemory.LoadHoldsAtMostAShardBeyondWhatStaysOnTheCpu";
  torch::nn::Sequential model;
  {
    accel::InitEmptyWeights scope;
    for (int i = 0; i < 8; ++i) model->push_back(torch::nn::Linear(2048, 2048));
  }
  accel::Unit<torch::nn::Sequential> root(model);  // so that its layers may stay on "disk"
  const accel::DeviceMap map = {{"", "cpu"}, {"4", "disk"}, {"5", "disk"}, {"6", "disk"}, {"7", "disk"}};
  const int64_t before = status_bytes("VmRSS:");
  std::ofstream("/proc/self/clear_refs") << "5";  // resets the peak (VmHWM) to now
  accel::load_checkpoint_and_dispatch(*model, folder,
                                      accel::DispatchOptions().device_map(map).dtype(torch::kFloat).read_threads(2));
  const int64_t peak = status_bytes("VmHWM:");
  int64_t resident = 0;
  for (const auto& p : model->parameters())
    if (!p.is_meta()) resident += p.nbytes();
  std::cout << "PEAK_GROWTH=" << peak - before << " RESIDENT=" << resident << " BEFORE=" << before << std::endl;
}

TEST(DispatchMemory, LoadHoldsAtMostAShardBeyondWhatStaysOnTheCpu) {
  accel::testing::TempDir dir;
  // 8 layers of 8 MiB in fp16 (64 MiB), in shards of about 16 MiB; half
  // the layers go to the CPU in fp32 (64 MiB), half stay on "disk".
  {
    torch::nn::Sequential model;
    for (int i = 0; i < 8; ++i) model->push_back(torch::nn::Linear(2048, 2048));
    model->to(torch::kHalf);
    accel::save_model(*model, dir.path() / "model", accel::SaveModelOptions().max_shard_size(int64_t{17} << 20));
  }
  int64_t largest_shard = 0;
  int shards = 0;
  for (const auto& f : fs::directory_iterator(dir.path() / "model"))
    if (f.path().extension() == ".safetensors") {
      largest_shard = std::max<int64_t>(largest_shard, static_cast<int64_t>(fs::file_size(f.path())));
      ++shards;
    }
  ASSERT_GE(shards, 4);
  const auto outcome = accel::testing::run_program(
      {"/proc/self/exe", "--gtest_filter=DispatchMemory.DISABLED_LoadChild", "--gtest_also_run_disabled_tests"},
      dir.path() / "child.log", {.env = {{"ACCEL_LOAD_CHILD", (dir.path() / "model").string()}}});
  ASSERT_EQ(outcome.status, 0) << outcome.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(outcome.output, m, std::regex("PEAK_GROWTH=(-?\\d+) RESIDENT=(\\d+)")))
      << outcome.output;
  const int64_t growth = std::stoll(m[1]), resident = std::stoll(m[2]);
  std::cout << "peak growth while loading " << growth << " bytes, resident after " << resident << ", largest shard "
            << largest_shard << std::endl;
  EXPECT_EQ(resident, 4 * (2048 * 2048 + 2048) * 4);
  // What stays, plus the two readers' 8 MiB conversion chunks and 16 MiB
  // of slack (less than one shard beyond what stays).
  EXPECT_LE(growth, resident + 2 * (int64_t{8} << 20) + (int64_t{16} << 20))
      << "peak growth " << growth << ", resident " << resident << ", largest shard " << largest_shard;
}

}  // namespace
