// save_state / load_state on 2 CPU ranks over Gloo. Exact resume: a run
// trained N steps straight, and a run trained k steps, saved, then
// continued for N - k steps by new processes that load the checkpoint,
// end with bit-identical parameters, optimizer state and learning rate
// (shuffled sharded loader stopped mid-epoch, AdamW, a warmup schedule,
// dropout, gradient accumulation; fp32 and bf16 autocast). Then automatic
// naming with total_limit, a save killed between files, and the refusals.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/checkpoint/staged_directory.h"
#include "accel/dist/launcher.h"
#include "accel/optim/schedules.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::expect_error;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;
using accel::testing::TempDir;
namespace F = torch::nn::functional;
namespace fs = std::filesystem;

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc = register_module("fc", torch::nn::Linear(6, 16));
    drop = register_module("drop", torch::nn::Dropout(0.3));
    head = register_module("head", torch::nn::Linear(16, 3));
  }
  torch::Tensor forward(torch::Tensor x) { return head(drop(torch::tanh(fc(x)))); }
  torch::nn::Linear fc{nullptr}, head{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(Net);

// A user object registered for checkpointing: the steps done so far.
struct Progress {
  int64_t steps = 0;
  safetensors::NamedTensors state_dict() const { return {{"steps", torch::tensor(steps)}}; }
  void load_state_dict(const safetensors::OrderedTensors& d) { steps = d["steps"].item<int64_t>(); }
};

struct Config {
  std::string precision;
  int64_t accumulation;
};

// One training run's objects, built the same way by every run.
struct Trainer {
  explicit Trainer(const Config& c, AcceleratorOptions options = {})
      : acc(options.mixed_precision(c.precision).gradient_accumulation_steps(c.accumulation)) {
    seed_cpu(5);
    Net n;
    auto o =
        std::make_shared<torch::optim::AdamW>(n->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.05));
    auto s = get_scheduler("linear", *o, 3, 40);
    auto g = at::detail::createCPUGenerator(21);
    auto ds = std::make_shared<TensorDataset>(
        TensorDict{{"x", torch::randn({40, 6}, g)}, {"y", torch::randint(0, 3, {40}, g)}});
    auto l = make_data_loader(ds, DataLoaderOptions(4).shuffle(true).seed(123));
    auto [pm, po, ps, pl] = acc.prepare(n, o, s, l);
    net = n;
    model.emplace(std::move(pm));
    optimizer = po;
    scheduler = ps;
    loader.emplace(std::move(pl));
    progress = std::make_shared<Progress>();
    acc.register_for_checkpointing(progress);
  }

  // `steps` batches from wherever the loader stands, across epochs.
  void train(int64_t steps) {
    int64_t done = 0;
    while (done < steps) {
      for (auto& b : *loader) {
        auto scope = acc.accumulate(*model);
        acc.backward(F::cross_entropy((*model)(b["x"]), b["y"]));
        optimizer->step();
        scheduler->step();
        optimizer->zero_grad();
        ++progress->steps;
        if (++done == steps) break;
      }
    }
  }

  // Parameters and optimizer state, by name, to compare bit for bit.
  safetensors::NamedTensors snapshot() {
    safetensors::NamedTensors out;
    for (const auto& item : net->named_parameters())
      out.emplace_back("param." + item.key(), item.value().detach().clone());
    for (auto& [name, t] : optimizer_state(optimizer->optimizer()).tensors) out.emplace_back(name, t);
    out.emplace_back("lr", torch::tensor(scheduler->get_last_lr()[0], torch::kFloat64));
    out.emplace_back("steps", torch::tensor(progress->steps));
    out.emplace_back("random", torch::rand({4}));  // the generator continues identically too
    return out;
  }

  Accelerator acc;
  Net net{nullptr};
  std::optional<PreparedModel<Net>> model;
  std::shared_ptr<AcceleratedOptimizer> optimizer;
  std::shared_ptr<AcceleratedScheduler> scheduler;
  std::optional<DataLoader<TensorDict>> loader;
  std::shared_ptr<Progress> progress;
};

class SaveState : public ::testing::Test {
 protected:
  void expect_exact_resume(const Config& c) {
    constexpr int64_t kTotal = 13, kFirst = 7;  // 5 steps per epoch: the save falls mid-epoch 2
    const fs::path dir = dir_;
    run_distributed(2, [&] {
      Trainer r(c);
      r.train(kTotal);
      safetensors::save_file(r.snapshot(),
                             dir / ("straight_" + std::to_string(r.acc.process_index()) + ".safetensors"));
    });
    run_distributed(2, [&] {
      Trainer r(c);
      r.train(kFirst);
      EXPECT_EQ(r.acc.save_state(dir / "ckpt"), dir / "ckpt");
    });
    run_distributed(2, [&] {
      Trainer r(c);
      r.acc.load_state(dir / "ckpt");
      EXPECT_EQ(r.progress->steps, kFirst);
      r.train(kTotal - kFirst);
      auto want = safetensors::load_file(dir / ("straight_" + std::to_string(r.acc.process_index()) + ".safetensors"));
      auto got = r.snapshot();
      ASSERT_EQ(got.size(), want.size());
      for (auto& [name, t] : got) {
        ASSERT_TRUE(want.contains(name)) << name;
        EXPECT_TRUE(torch::equal(t, want[name])) << name << " differs after resume";
      }
    });
    // The files of Accelerate's layout are there.
    for (const char* f : {"model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
                          "dataloader.json", "custom_checkpoint_0.safetensors", "random_states_0.safetensors",
                          "random_states_1.safetensors", "accel_state.json"})
      EXPECT_TRUE(fs::exists(dir_ / "ckpt" / f)) << f;
  }

  // `ranks` processes train `steps` fp32 steps and save into `dir`.
  static void save_after(int ranks, int steps, const fs::path& dir) {
    run_distributed(ranks, [&] {
      Trainer r({"no", 1});
      r.train(steps);
      r.acc.save_state(dir);
    });
  }

  TempDir dir_{"save_state"};
};

}  // namespace

TEST_F(SaveState, ExactResumeFp32WithAccumulation) { expect_exact_resume({"no", 2}); }
TEST_F(SaveState, ExactResumeBf16) { expect_exact_resume({"bf16", 1}); }

TEST_F(SaveState, AutomaticNamingKeepsTotalLimitAndLoadsTheNewest) {
  const fs::path dir = dir_;
  run_distributed(2, [&] {
    Trainer r({"no", 1}, AcceleratorOptions().project_config(
                             ProjectConfiguration().project_dir(dir).automatic_checkpoint_naming(true).total_limit(2)));
    for (int i = 0; i < 4; ++i) {
      r.train(1);
      EXPECT_EQ(r.acc.save_state(), dir / "checkpoints" / ("checkpoint_" + std::to_string(i)));
    }
    r.acc.wait_for_everyone();
    auto all = list_checkpoints(dir / "checkpoints");
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].first, 2);
    EXPECT_EQ(all[1].first, 3);
  });
  run_distributed(2, [&] {
    Trainer r({"no", 1}, AcceleratorOptions().project_config(
                             ProjectConfiguration().project_dir(dir).automatic_checkpoint_naming(true).total_limit(2)));
    EXPECT_EQ(r.acc.load_state(), dir / "checkpoints" / "checkpoint_3");
    EXPECT_EQ(r.progress->steps, 4);
    // The numbering continues after the loaded checkpoint.
    EXPECT_EQ(r.acc.project_configuration().iteration(), 4);
    EXPECT_EQ(r.acc.save_state(), dir / "checkpoints" / "checkpoint_4");
  });
}

TEST_F(SaveState, SaveKilledBetweenFilesLeavesThePreviousCheckpoint) {
  const fs::path dir = dir_;
  save_after(1, 3, dir / "ckpt");
  // The main process dies while writing the registered objects: after the
  // model and optimizer files of the new save, before accel_state.json.
  LaunchOptions one;
  one.num_processes = 1;
  const auto killed = launch_processes(
      [&] {
        struct Bomb {
          safetensors::NamedTensors state_dict() const {
            ::kill(::getpid(), SIGKILL);
            return {};
          }
          void load_state_dict(const safetensors::OrderedTensors&) {}
        };
        Trainer r({"no", 1});
        r.acc.register_for_checkpointing(std::make_shared<Bomb>());
        r.train(5);
        r.acc.save_state(dir / "ckpt");
      },
      one);
  ASSERT_FALSE(killed.ok()) << "the save should have been killed";
  EXPECT_NE(killed.describe().find("rank 0"), std::string::npos) << killed.describe();
  EXPECT_TRUE(fs::exists(staging_directory(dir_ / "ckpt"))) << "the half save stays in the staging folder";
  EXPECT_FALSE(fs::exists(staging_directory(dir_ / "ckpt") / "accel_state.json"));
  // The previous checkpoint is intact and loads: 3 steps, not 5.
  run_distributed(1, [&] {
    Trainer r({"no", 1});
    r.acc.load_state(dir / "ckpt");
    EXPECT_EQ(r.progress->steps, 3);
    // The half-written folder is refused, naming what is missing.
    expect_error<std::runtime_error>([&] { r.acc.load_state(staging_directory(dir / "ckpt")); }, {"accel_state.json"});
    // The next save clears the leftover.
    r.acc.save_state(dir / "ckpt");
    EXPECT_FALSE(fs::exists(staging_directory(dir / "ckpt")));
  });
}

TEST_F(SaveState, RefusesAnotherWorldSizeOtherObjectsAndMissingFiles) {
  const fs::path dir = dir_;
  save_after(2, 2, dir / "ckpt");
  run_distributed(1, [&] {
    Trainer r({"no", 1});
    expect_error([&] { r.acc.load_state(dir / "ckpt"); },
                 {"saved by 2 processes", "this run has 1", "--num_processes 2"});
  });
  run_distributed(2, [&] {
    Trainer r({"no", 1});
    r.acc.register_for_checkpointing(std::make_shared<Progress>());  // one more than was saved
    expect_error([&] { r.acc.load_state(dir / "ckpt"); }, {"custom_checkpoints", "holds 1", "has 2"});
  });
  run_distributed(2, [&] {
    Trainer r({"no", 1});
    if (r.acc.is_main_process()) fs::remove(dir / "ckpt" / "scheduler.json");
    r.acc.wait_for_everyone();
    expect_error([&] { r.acc.load_state(dir / "ckpt"); }, {"lacks", "scheduler.json"});
  });
  run_distributed(1, [&] {
    Accelerator acc;
    expect_error([&] { acc.load_state(); }, {"automatic_checkpoint_naming is off"});
    expect_error([&] { acc.save_state(); }, {"automatic_checkpoint_naming is off"});
    expect_error([&] { acc.load_state(dir / "nowhere"); }, {"not a folder"});
  });
}

TEST(SaveStateOptions, TotalLimitMustBePositive) {
  EXPECT_THROW(Accelerator(AcceleratorOptions().cpu(true).project_config(ProjectConfiguration().total_limit(0))),
               std::invalid_argument);
}
