// infer_auto_device_map against Accelerate's: the peer script builds the
// C++ model's module tree (classes, tensors, ties) in PyTorch on the meta
// device and calls accelerate.utils.infer_auto_device_map with the same
// max_memory, no_split_module_classes and dtype; the maps must be equal.
// GPUs in max_memory are Accelerate's integer keys: neither side needs the
// devices to exist to plan.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "accel/big_model/auto_device_map.h"
#include "accel/big_model/empty_init.h"
#include "support/device_map_model.h"
#include "support/peers.h"
#include "support/temp_dir.h"

namespace {

using nlohmann::json;

std::string torch_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "float32";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kBool: return "bool";
    case torch::kLong: return "int64";
    case torch::kInt: return "int32";
    default: throw std::invalid_argument("no Python name for this dtype here");
  }
}

// The module tree as the peer script rebuilds it.
json tree_of(torch::nn::Module& model) {
  std::unordered_map<const torch::nn::Module*, std::string> unit_names;
  for (const auto& u : accel::find_units(model)) unit_names[&u.slot->module()] = u.slot->class_name();
  std::unordered_map<const c10::TensorImpl*, int> ties;
  auto tensors = [&](const torch::OrderedDict<std::string, torch::Tensor>& d) {
    json out = json::array();
    for (const auto& item : d) {
      const auto& t = item.value();
      const int tie = ties.emplace(t.unsafeGetTensorImpl(), static_cast<int>(ties.size())).first->second;
      out.push_back(
          {{"name", item.key()}, {"shape", t.sizes().vec()}, {"dtype", torch_dtype(t.scalar_type())}, {"tie", tie}});
    }
    return out;
  };
  json nodes = json::array();
  for (const auto& m : model.named_modules("", /*include_self=*/true)) {
    auto it = unit_names.find(m.value().get());
    nodes.push_back({{"path", m.key()},
                     {"class", it != unit_names.end() ? it->second : m.value()->name()},
                     {"params", tensors(m.value()->named_parameters(false))},
                     {"buffers", tensors(m.value()->named_buffers(false))}});
  }
  return nodes;
}

struct Case {
  std::vector<std::pair<std::string, json>> max_memory;  // key -> int or string, as Accelerate takes it
  std::vector<std::string> no_split;
  std::optional<torch::ScalarType> dtype;
  bool fallback = false;  // fallback_allocation
};

accel::DeviceMapOptions options_of(const Case& c) {
  accel::MaxMemory max_memory;
  for (const auto& [k, v] : c.max_memory)
    max_memory.emplace_back(
        k, v.is_string() ? accel::MemorySize(v.get<std::string>()) : accel::MemorySize(v.get<int64_t>()));
  return accel::DeviceMapOptions()
      .max_memory(max_memory)
      .no_split_module_classes(c.no_split)
      .dtype(c.dtype)
      .fallback_allocation(c.fallback);
}

void expect_same_maps(torch::nn::Module& model, const std::vector<Case>& cases) {
  accel::testing::TempDir dir;
  json spec = {{"model", tree_of(model)}, {"cases", json::array()}};
  for (const auto& c : cases) {
    json memory = json::object();
    for (const auto& [k, v] : c.max_memory) memory[k] = v;
    spec["cases"].push_back({{"max_memory", memory},
                             {"no_split", c.no_split},
                             {"dtype", c.dtype ? json(torch_dtype(*c.dtype)) : json()},
                             {"fallback", c.fallback}});
  }
  const auto path = dir.path() / "cases.json";
  std::ofstream(path) << spec.dump();
  const json peer = accel::testing::run_peer_script("device_map_peer.py", {path.string()});
  ASSERT_EQ(peer.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto ours = accel::infer_auto_device_map(model, options_of(cases[i]));
    const auto theirs = peer[i].get<std::map<std::string, std::string>>();
    EXPECT_EQ(ours, theirs) << "case " << i << ": max_memory " << spec["cases"][i]["max_memory"].dump();
  }
}

TEST(DeviceMapPeer, GptShapedModelUnderManyBudgets) {
  REQUIRE_PEERS("accelerate", "torch");
  auto model = accel::init_empty_weights([] { return accel::testing::MapLM(); });
  const std::vector<std::string> blocks = {"GPT2Block"};
  const std::vector<Case> cases = {
      // Everything fits on GPU 0.
      {{{"0", 10'000'000}, {"cpu", 10'000'000}}, blocks, {}},
      // Two GPUs, then the CPU.
      {{{"0", 500'000}, {"1", 400'000}, {"cpu", 1'000'000}}, blocks, {}},
      // GPU, CPU and disk.
      {{{"0", 600'000}, {"cpu", 450'000}}, blocks, {}},
      // No GPU: the CPU, then the disk.
      {{{"cpu", 600'000}}, blocks, {}},
      // GPUs given out of order, an explicit disk entry.
      {{{"1", 300'000}, {"0", 700'000}, {"cpu", 2'000'000}, {"disk", 0}}, blocks, {}},
      // Without no-split classes the blocks are split.
      {{{"0", 450'000}, {"cpu", 1'000'000}}, {}, {}},
      {{{"0", 620'000}, {"1", 330'000}, {"cpu", 400'000}}, {}, {}},
      // Budgets as Accelerate's strings, and a dtype: float tensors halve,
      // the bool mask and int64 positions keep their size.
      {{{"0", "300KB"}, {"cpu", "300KiB"}}, blocks, torch::kFloat16},
      {{{"0", "0.7MB"}, {"1", "0.25MiB"}, {"cpu", "3Mb"}}, blocks, torch::kBFloat16},
      // The tie: the token embedding fits on GPU 0, the head's own
      // projection with it does not, so the head is split to keep the tied
      // weight with the embedding.
      {{{"0", 520'000}, {"1", 2'000'000}, {"cpu", 1'000'000}}, blocks, {}},
      {{{"0", 520'000}, {"cpu", 1'000'000}}, {}, {}},
      // fallback_allocation: a device the next module neither fits nor
      // splits on takes the first later module that fits (the final norm,
      // the first block's first norm) instead of staying empty; and maps
      // where the filling leaves no device empty, which it does not change.
      {{{"0", 300'000}, {"1", 40'000}, {"cpu", 300'000}}, blocks, {}, true},
      {{{"0", 450'000}, {"1", 150'000}, {"cpu", 300'000}}, blocks, {}, true},
      {{{"0", 300'000}, {"1", 20'000}, {"cpu", 290'000}}, {}, {}, true},
      {{{"0", 480'000}, {"1", 70'000}, {"cpu", 900'000}}, {}, {}, true},
      {{{"0", 300'000}, {"1", 50'000}, {"cpu", 500'000}}, blocks, {}, true},
  };
  expect_same_maps(*model, cases);
}

// A plain list of LibTorch modules (no units, no ties): class names are
// the C++ ones, which the no-split list names.
TEST(DeviceMapPeer, ListOfLibTorchModules) {
  REQUIRE_PEERS("accelerate", "torch");
  auto model = accel::init_empty_weights([] {
    torch::nn::ModuleList list;
    for (int i = 0; i < 3; ++i) {
      list->push_back(
          torch::nn::ModuleList(torch::nn::Linear(128, 256), torch::nn::ReLU(), torch::nn::Linear(256, 128)));
      list->push_back(torch::nn::BatchNorm1d(128));
    }
    return list;
  });
  const std::vector<std::string> no_split = {"torch::nn::ModuleListImpl"};
  expect_same_maps(*model, {{{{"0", 300'000}, {"1", 300'000}, {"cpu", 300'000}}, no_split, {}},
                            {{{"0", 300'000}, {"1", 300'000}, {"cpu", 300'000}}, {}, {}},
                            {{{"cpu", 500'000}}, {}, torch::kHalf},
                            {{{"0", 150'000}, {"1", 200'000}, {"cpu", 300'000}}, no_split, {}, true},
                            {{{"0", 200'000}, {"1", 100'000}, {"cpu", 300'000}}, {}, {}, true}});
}

}  // namespace
