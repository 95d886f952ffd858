// save_state / load_state of a tensor-parallel model through the
// Accelerator: each tensor-parallel rank of data-parallel rank 0 writes its
// slices of the model and of AdamW's state (checkpoint/model_slices.h),
// placed in the whole tensors.
//
// GPT-2 tiny with a vocabulary of 501 tokens (not divisible by tp = 2: the
// first rank holds one row more) and its packed q/k/v projection, at
// tp=2 x dp_shard=2 on 4 ranks, saved after 2 AdamW steps:
// - the files join into exactly the whole weights and exp_avg the ranks hold;
// - on the same layout, load_state then 2 steps equals 4 steps straight, bit for bit;
// - in one process without tensor parallelism, load_state then 2 steps
//   equals the 4 steps within 1e-6 (model and optimizer state resliced);
// - that process's own (unsplit) checkpoint loads back into tp=2 on 2
//   ranks, which then also equal the 4 steps within 1e-6.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "accel/accelerator.h"
#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/resume_run.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

namespace fs = std::filesystem;
using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr int kSteps = 4, kSaveAt = 2;
constexpr int64_t kRowsPerStep = 4, kSeq = 16, kVocab = 501;

gpt2::GPT2Options options() { return gpt2::named_config("tiny").vocab_size(kVocab); }

torch::Tensor all_rows() { return accel::testing::resume_rows(kSteps, kRowsPerStep, kSeq, kVocab); }

std::shared_ptr<torch::optim::AdamW> adamw(gpt2::GPT2& model) {
  return accel::testing::resume_adamw(model->parameters());
}

// One step on this data-parallel rank's share of the step's rows.
void train_step(Accelerator& acc, PreparedModel<gpt2::GPT2>& prepared, AcceleratedOptimizer& opt, int step) {
  const int64_t per_rank = kRowsPerStep / acc.data_parallel_size();
  auto rows = all_rows().narrow(0, step * kRowsPerStep + acc.data_parallel_index() * per_rank, per_rank);
  auto loss = prepared(rows.narrow(1, 0, kSeq).contiguous(), rows.narrow(1, 1, kSeq).contiguous());
  acc.backward(loss);
  opt.step();
  opt.zero_grad();
}

// The whole tensor of which `value` (sliced like `parameter`, as its
// exp_avg is) is this rank's slice: gathered as the parameter is.
torch::Tensor whole_like(torch::Tensor parameter, const torch::Tensor& value) {
  torch::NoGradGuard no_grad;
  const auto own = parameter.data();
  parameter.set_data(value);
  auto whole = full_tensor_parallel_parameter(parameter).clone();
  parameter.set_data(own);
  return whole;
}

ParallelismConfig tp_times_dp() {
  ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = 2;
  return c;
}

}  // namespace

TEST(TensorParallelCheckpoint, ResumesOnTheSameLayoutExactlyAndOnOthers) {
  const accel::testing::TempDir dir("tp_checkpoint");
  const fs::path ckpt = dir / "ckpt";
  run_distributed(4, [&] {
    Accelerator acc(AcceleratorOptions().parallelism_config(tp_times_dp()));
    seed_cpu(5);
    gpt2::GPT2 model(options());
    gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    for (int s = 0; s < kSaveAt; ++s) train_step(acc, prepared, *opt, s);
    std::map<std::string, torch::Tensor> at_save;
    for (const auto& p : model->named_parameters()) at_save[p.key()] = full_tensor_parallel_parameter(p.value());
    acc.save_state(ckpt);

    // Only data-parallel rank 0 of each tensor-parallel group wrote slices.
    EXPECT_TRUE(fs::exists(ckpt / "model_fsdp_rank1.safetensors"));
    EXPECT_FALSE(fs::exists(ckpt / "model_fsdp_rank2.safetensors"));
    EXPECT_TRUE(fs::exists(ckpt / "tp_optimizer_rank1.safetensors"));
    EXPECT_FALSE(fs::exists(ckpt / "tp_optimizer_rank2.safetensors"));
    // The files place every slice: merged, they are the whole weights
    // (c_attn's q/k/v pieces and the uneven vocabulary rows included).
    const auto merged = merged_sliced_weights(ckpt);
    EXPECT_EQ(merged.size(), at_save.size());
    for (const auto& [name, t] : merged) {
      ASSERT_TRUE(at_save.count(name)) << name;
      EXPECT_TRUE(t.equal(at_save.at(name))) << name << " as merged from the slices";
    }
    // And the optimizer's files hold the whole exp_avg of every parameter.
    const SliceSet optimizer_slices({ckpt / "tp_optimizer_rank0.safetensors", ckpt / "tp_optimizer_rank1.safetensors"});
    size_t n = 0;
    for (const auto& p : model->named_parameters()) {
      auto& st =
          static_cast<torch::optim::AdamWParamState&>(*opt->optimizer().state().at(p.value().unsafeGetTensorImpl()));
      const auto key = "state." + std::to_string(n++) + ".exp_avg";
      const auto whole_exp_avg = whole_like(p.value(), st.exp_avg());
      EXPECT_TRUE(optimizer_slices.read_whole(key).view(whole_exp_avg.sizes()).equal(whole_exp_avg)) << key;
    }

    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    std::map<std::string, torch::Tensor> straight;
    for (const auto& p : model->named_parameters()) straight[p.key()] = full_tensor_parallel_parameter(p.value());

    acc.load_state(ckpt);
    for (const auto& p : model->named_parameters())
      EXPECT_TRUE(full_tensor_parallel_parameter(p.value()).equal(at_save.at(p.key()))) << p.key() << " reloaded";
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    for (const auto& p : model->named_parameters())
      EXPECT_TRUE(full_tensor_parallel_parameter(p.value()).equal(straight.at(p.key())))
          << p.key() << " after resuming on the same layout";
    if (acc.is_main_process()) {
      safetensors::NamedTensors out(straight.begin(), straight.end());
      safetensors::save_file(out, dir / "straight.safetensors");
    }
    acc.wait_for_everyone();
  });

  // Another layout: one process, no tensor parallelism.
  run_distributed(1, [&] {
    const auto straight = safetensors::load_file(dir / "straight.safetensors");
    Accelerator acc;
    seed_cpu(99);  // other initial weights: load_state must replace them all
    gpt2::GPT2 model(options());
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    acc.load_state(ckpt);
    acc.save_state(dir / "whole");  // the same state, saved unsplit (model.safetensors, optimizer.*)
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    for (const auto& p : model->named_parameters())
      EXPECT_LT(max_diff(p.value(), straight[p.key()]), 1e-6) << p.key() << " resumed at tp=1 in one process";
  });

  // And back: that unsplit checkpoint into tp=2 on 2 ranks, each cutting its slices.
  run_distributed(2, [&] {
    const auto straight = safetensors::load_file(dir / "straight.safetensors");
    ParallelismConfig tp;
    tp.tp_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(tp));
    seed_cpu(98);
    gpt2::GPT2 model(options());
    gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    acc.load_state(dir / "whole");
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    for (const auto& p : model->named_parameters())
      EXPECT_LT(max_diff(full_tensor_parallel_parameter(p.value()), straight[p.key()]), 1e-6)
          << p.key() << " resumed at tp=2 from a checkpoint saved at tp=1";
  });
}
