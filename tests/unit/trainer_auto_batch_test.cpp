// auto_find_batch_size on the CPU: a model whose forward needs a scratch
// buffer that the CPU allocator really cannot give above a batch size
// (2^60 bytes: DefaultCPUAllocator fails at once, nothing is committed)
// makes the Trainer restart with int(0.9 * batch) until one fits; it ends
// with that batch, its weights and losses equal to a plain run at that
// batch. Another error passes through after one attempt; out of memory at
// every size ends in an error naming auto_find_batch_size. (A real CUDA
// out-of-memory: tests/gpu/trainer_gpu_test.cpp.)
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/trainer.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::error_of;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// A linear model whose forward allocates a scratch buffer per batch: 64
// bytes an example up to `fits`, 2^60 bytes above it.
struct HungryImpl : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  int64_t fits;
  std::shared_ptr<std::vector<int64_t>> failed = std::make_shared<std::vector<int64_t>>();
  bool boom = false;
  explicit HungryImpl(int64_t fits_) : fits(fits_) { fc = register_module("fc", torch::nn::Linear(8, 4)); }
  torch::Tensor forward(const TensorDict& b) {
    const int64_t batch = b.at("x").size(0);
    if (boom) throw std::runtime_error("boom: not a memory error");
    if (batch > fits) failed->push_back(batch);
    auto scratch = torch::empty({batch > fits ? int64_t{1} << 60 : batch * 64}, torch::kUInt8);
    return torch::mse_loss(fc(b.at("x")), b.at("labels"));
  }
};
TORCH_MODULE(Hungry);

std::shared_ptr<Dataset<TensorDict>> rows() {
  auto [x, y] = accel::testing::regression_data(40);
  return accel::testing::rows_dataset(x, y);
}

Hungry model(int64_t fits) {
  torch::manual_seed(1);
  return Hungry(fits);
}

TrainingArguments args_for(const fs::path& out, int64_t batch, bool auto_find) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(batch)
      .auto_find_batch_size(auto_find)
      .num_train_epochs(2)
      .learning_rate(1e-2)
      .logging_steps(2)
      .save_steps(4)
      .disable_tqdm(true)
      .use_cpu(true);
}

}  // namespace

TEST(TrainerAutoBatch, ShrinksUntilTheBatchFitsThenTrainsAsAPlainRun) {
  accel::testing::TempDir dir("trainer_auto_batch");
  auto found = model(7);
  Trainer a(found, args_for(dir.path() / "auto", 16, true), rows());
  const auto out = a.train();
  // Accelerate's schedule: 16, 14, 12, 10, 9, 8 fail; 7 fits.
  EXPECT_EQ(*found->failed, (std::vector<int64_t>{16, 14, 12, 10, 9, 8}));
  EXPECT_EQ(a.state().train_batch_size, 7);
  // 40 rows in batches of 7: 6 steps an epoch, 12 in all.
  EXPECT_EQ(out.global_step, 12);

  auto plain = model(7);
  Trainer b(plain, args_for(dir.path() / "plain", 7, false), rows());
  b.train();
  for (const auto& p : plain->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), found->named_parameters()[p.key()])) << p.key();
  const auto& ha = a.state().log_history;
  const auto& hb = b.state().log_history;
  ASSERT_EQ(ha.size(), hb.size());
  for (size_t i = 0; i + 1 < ha.size(); ++i) EXPECT_EQ(ha[i], hb[i]) << "entry " << i;
  // The checkpoints record the batch found (a resumed run starts from it).
  EXPECT_EQ(TrainerState::load(dir.path() / "auto" / "checkpoint-12" / "trainer_state.json").train_batch_size, 7);
  EXPECT_EQ(TrainerState::load(dir.path() / "auto" / "checkpoint-4" / "trainer_state.json").train_batch_size, 7);
}

TEST(TrainerAutoBatch, OtherErrorsPassThroughAndZeroIsAnError) {
  accel::testing::TempDir dir("trainer_auto_batch_errors");
  auto boom = model(100);
  boom->boom = true;
  Trainer a(boom, args_for(dir.path() / "boom", 16, true), rows());
  EXPECT_EQ(error_of([&] { a.train(); }), "boom: not a memory error");

  auto never = model(0);
  Trainer b(never, args_for(dir.path() / "never", 3, true), rows());
  const auto error = error_of([&] { b.train(); });
  EXPECT_THAT(error, HasSubstr("auto_find_batch_size ran out of memory at every batch size from 3 down to 1"));
  EXPECT_THAT(error, HasSubstr("reached zero"));
  EXPECT_EQ(*never->failed, (std::vector<int64_t>{3, 2, 1}));

  // Without auto_find_batch_size the allocator's error is the Trainer's.
  auto once = model(7);
  Trainer c(once, args_for(dir.path() / "once", 16, false), rows());
  EXPECT_THAT(error_of([&] { c.train(); }), HasSubstr("DefaultCPUAllocator: can't allocate memory"));
  EXPECT_EQ(*once->failed, (std::vector<int64_t>{16}));
}
