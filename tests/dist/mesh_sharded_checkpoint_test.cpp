// save_state / load_state of models sharded by FSDP or ZeRO over a device
// mesh with tensor or context parallel, and of a tensor-parallel model with
// fp32 master weights, through the Accelerator (Gloo, 4 or 2 ranks).
//
// GPT-2 tiny with a vocabulary of 501 tokens (not divisible by tp = 2: the
// first tp rank holds one row more, so the tp ranks' flat layouts differ)
// and its packed q/k/v projection, saved after 2 AdamW steps:
// - tp=2 x full_shard (dp_shard=2): every rank writes its FSDP pieces of
//   its tp slices as blocks of the whole tensors; merge-weights joins them
//   into exactly the gathered weights (`accel merge-weights`); the same
//   layout resumes bit for bit (load_state then 2 steps == 4 steps
//   straight); one process (with and without full_shard) and tp=2 without
//   sharding load model and AdamW state exactly, and their 2 more steps
//   equal the 4 within 1e-6;
// - tp=2 x ZeRO-2 (dp=2): the same layout resumes bit for bit, another is
//   refused by name;
// - cp=2 x full_shard (dp_shard=2): the same, and one process without
//   sharding loads it; cp=2 x ZeRO-2 resumes bit for bit;
// - tp=2 with bf16 mixed precision and fp32 master weights: the same
//   layout resumes bit for bit; one process loads exactly the masters and
//   AdamW moments the two ranks held.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "accel/accelerator.h"
#include "accel/amp/master_weights.h"
#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/programs.h"
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
using Weights = std::map<std::string, torch::Tensor>;

gpt2::GPT2Options config() { return gpt2::named_config("tiny").vocab_size(kVocab); }

torch::Tensor all_rows() { return accel::testing::resume_rows(kSteps, kRowsPerStep, kSeq, kVocab); }

std::shared_ptr<torch::optim::AdamW> adamw(gpt2::GPT2& model) {
  return accel::testing::resume_adamw(model->parameters());
}

// One step on this data-parallel rank's rows (under context parallel, on
// its part of their sequence).
void train_step(Accelerator& acc, PreparedModel<gpt2::GPT2>& prepared, AcceleratedOptimizer& opt, int step) {
  const int64_t per_rank = kRowsPerStep / acc.data_parallel_size();
  auto rows = all_rows().narrow(0, step * kRowsPerStep + acc.data_parallel_index() * per_rank, per_rank);
  auto inputs = rows.narrow(1, 0, kSeq).contiguous(), targets = rows.narrow(1, 1, kSeq).contiguous();
  const DeviceMesh* mesh = acc.device_mesh();
  torch::Tensor loss;
  if (mesh && mesh->config().cp_size > 1) {
    auto parts = context_parallel_shard(*mesh, {inputs, targets}, 1);
    const ContextParallel cp(*mesh);
    ContextParallelScope scope(cp);
    loss = prepared(parts[0], parts[1]);
  } else {
    loss = prepared(inputs, targets);
  }
  acc.backward(loss);
  opt.step();
  opt.zero_grad();
}

// The whole weights, gathered by the Accelerator (a collective).
Weights whole(Accelerator& acc, PreparedModel<gpt2::GPT2>& prepared) {
  Weights out;
  for (auto& [name, t] : acc.get_state_dict(prepared)) out[name] = t.detach().clone();
  return out;
}

void write(const Weights& w, const fs::path& file) {
  safetensors::save_file(safetensors::NamedTensors(w.begin(), w.end()), file);
}

Weights read(const fs::path& file) {
  Weights out;
  for (const auto& item : safetensors::load_file(file)) out[item.key()] = item.value();
  return out;
}

void expect_equal(const Weights& got, const Weights& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name << " " << what;
    EXPECT_TRUE(got.at(name).equal(t)) << name << " " << what << ": differs by " << max_diff(got.at(name), t);
  }
}

void expect_near(const Weights& got, const Weights& want, double tolerance, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name << " " << what;
    EXPECT_LT(max_diff(got.at(name), t), tolerance) << name << " " << what;
  }
}

ShardingOptions sharding(ShardingStrategy strategy) {
  return ShardingOptions().strategy(strategy).transformer_cls_to_wrap({"GPT2Block"});
}

ParallelismConfig mesh_of(int tp, int cp) {
  ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = tp;
  c.cp_size = cp;
  return c;
}

// On `ranks` ranks: train 2 steps, save, 2 more; load, the same 2 again:
// the run resumes bit for bit. Writes the weights at the save and after 4
// steps to `dir` for the other layouts.
void save_and_resume(const AcceleratorOptions& options, const fs::path& dir,
                     const std::function<void(const fs::path&)>& check_files = {}, int ranks = 4) {
  run_distributed(ranks, [&] {
    Accelerator acc(options);
    seed_cpu(5);
    gpt2::GPT2 model(config());
    if (acc.device_mesh()->config().tp_size > 1) gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    for (int s = 0; s < kSaveAt; ++s) train_step(acc, prepared, *opt, s);
    const auto at_save = whole(acc, prepared);
    acc.save_state(dir / "ckpt");
    if (check_files) check_files(dir / "ckpt");
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    const auto straight = whole(acc, prepared);

    acc.load_state(dir / "ckpt");
    expect_equal(whole(acc, prepared), at_save, "reloaded");
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    expect_equal(whole(acc, prepared), straight, "after resuming on the same layout");
    if (acc.is_main_process()) {
      write(at_save, dir / "at_save.safetensors");
      write(straight, dir / "straight.safetensors");
    }
    acc.wait_for_everyone();
  });
}

// Another layout: `processes` ranks with tensor parallel over all of them
// (1: one process), sharding with `strategy` or none. Loads the checkpoint
// exactly, and its 2 more steps equal the 4 straight within 1e-6.
void resume_elsewhere(const fs::path& dir, int processes, std::optional<ShardingStrategy> strategy) {
  run_distributed(processes, [&] {
    AcceleratorOptions options;
    if (processes > 1) {
      ParallelismConfig tp;
      tp.tp_size = processes;
      options.parallelism_config(tp);
    }
    if (strategy) options.sharding(sharding(*strategy));
    Accelerator acc(options);
    seed_cpu(99);  // other initial weights: load_state must replace them all
    gpt2::GPT2 model(config());
    if (processes > 1) gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    train_step(acc, prepared, *opt, 0);  // AdamW moments of its own, which the load must replace
    const std::string where = std::to_string(processes) + " process(es), " + (strategy ? "full_shard" : "no sharding") +
                              (processes > 1 ? ", tp" : "");
    acc.load_state(dir / "ckpt");
    expect_equal(whole(acc, prepared), read(dir / "at_save.safetensors"), "loaded on " + where);
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    expect_near(whole(acc, prepared), read(dir / "straight.safetensors"), 1e-6, "resumed on " + where);
  });
}

}  // namespace

TEST(MeshShardedCheckpoint, TpTimesFullShardResumesAndLoadsOnOtherLayouts) {
  const accel::testing::TempDir dir("mesh_ckpt_tp_fsdp");
  save_and_resume(
      AcceleratorOptions().parallelism_config(mesh_of(2, 1)).sharding(sharding(ShardingStrategy::full_shard)),
      dir.path(), [](const fs::path& ckpt) {
        // Every rank holds its own pieces: four files of each.
        for (int r = 0; r < 4; ++r) {
          EXPECT_TRUE(fs::exists(ckpt / ("model_fsdp_rank" + std::to_string(r) + ".safetensors"))) << r;
          EXPECT_TRUE(fs::exists(ckpt / ("fsdp_optimizer_rank" + std::to_string(r) + ".safetensors"))) << r;
        }
      });
  // `accel merge-weights`: the pieces, each placed as blocks of its whole
  // (c_attn's q/k/v pieces, the uneven vocabulary rows), join into exactly
  // the weights the ranks held.
  const auto cli = accel::testing::run_program(
      {accel::testing::binary_path("accel"), "merge-weights", (dir / "ckpt").string(), (dir / "merged").string()},
      dir / "merge.log");
  ASSERT_EQ(cli.status, 0) << cli.output;
  expect_equal(read(dir / "merged" / "model.safetensors"), read(dir / "at_save.safetensors"), "as merged");
  // Model and AdamW state on other layouts: one process without sharding,
  // one process under full_shard, tp=2 without sharding (each rank cuts
  // its slice of the state out of the pieces).
  resume_elsewhere(dir.path(), 1, std::nullopt);
  resume_elsewhere(dir.path(), 1, ShardingStrategy::full_shard);
  resume_elsewhere(dir.path(), 2, std::nullopt);
  // The pieces are fp32 parameters, no separate masters: a run stepping
  // masters without sharding is refused by name rather than left stale.
  run_distributed(1, [&] {
    Accelerator acc(AcceleratorOptions().mixed_precision("bf16").master_weights(true));
    gpt2::GPT2 model(config());
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    accel::testing::expect_error([&] { acc.load_state(dir / "ckpt"); },
                                 {"load_state", "full_shard's slices", "master_weights"});
  });
}

TEST(MeshShardedCheckpoint, TpTimesHybridShardResumesAndLoadsInOneProcess) {
  // tp=2 x dp_replicate=2 x dp_shard=2 on 8 ranks (HSDP with tensor
  // parallel) resumes bit for bit, and one process loads the model and
  // AdamW state exactly (its 2 more steps within 1e-6 of the straight run).
  const accel::testing::TempDir dir("mesh_ckpt_tp_hsdp");
  auto mesh = mesh_of(2, 1);
  mesh.dp_replicate_size = 2;
  save_and_resume(AcceleratorOptions().parallelism_config(mesh).sharding(sharding(ShardingStrategy::hybrid_shard)),
                  dir.path(), {}, 8);
  resume_elsewhere(dir.path(), 1, std::nullopt);
}

TEST(MeshShardedCheckpoint, TpTimesZero2ResumesOnTheSameLayout) {
  const accel::testing::TempDir dir("mesh_ckpt_tp_zero");
  save_and_resume(
      AcceleratorOptions().parallelism_config(mesh_of(2, 1)).sharding(sharding(ShardingStrategy::shard_grad_op)),
      dir.path(), [](const fs::path& ckpt) {
        for (int t = 0; t < 2; ++t)
          for (int d = 0; d < 2; ++d)
            EXPECT_TRUE(fs::exists(ckpt / ("zero_tp" + std::to_string(t)) /
                                   ("zero_shard_rank" + std::to_string(d) + ".safetensors")))
                << t << " " << d;
      });
  // The model: the tp slices of the first data-parallel ranks, whole weights merged.
  Weights merged;
  for (const auto& [name, t] : merged_sliced_weights(dir / "ckpt")) merged[name] = t;
  expect_equal(merged, read(dir / "at_save.safetensors"), "as merged");
  // The optimizer's shards fit only the layout that saved them: another is refused by name.
  run_distributed(1, [&] {
    Accelerator acc;
    gpt2::GPT2 model(config());
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    accel::testing::expect_error([&] { acc.load_state(dir / "ckpt"); },
                                 {"load_state", "ZeRO shards per tensor-parallel group", "only the layout that saved"});
  });
}

TEST(MeshShardedCheckpoint, ContextTimesFullShardResumesAndLoadsInOneProcess) {
  const accel::testing::TempDir dir("mesh_ckpt_cp_fsdp");
  save_and_resume(
      AcceleratorOptions().parallelism_config(mesh_of(1, 2)).sharding(sharding(ShardingStrategy::full_shard)),
      dir.path());
  resume_elsewhere(dir.path(), 1, std::nullopt);
}

TEST(MeshShardedCheckpoint, ContextTimesZero2ResumesOnTheSameLayout) {
  // ZeRO's group is dp x cp (4 ranks): its shards numbered in that group.
  const accel::testing::TempDir dir("mesh_ckpt_cp_zero");
  save_and_resume(
      AcceleratorOptions().parallelism_config(mesh_of(1, 2)).sharding(sharding(ShardingStrategy::shard_grad_op)),
      dir.path(), [](const fs::path& ckpt) {
        for (int d = 0; d < 4; ++d)
          EXPECT_TRUE(fs::exists(ckpt / "zero_tp0" / ("zero_shard_rank" + std::to_string(d) + ".safetensors"))) << d;
      });
}

TEST(MeshShardedCheckpoint, TensorParallelMasterWeightsResumeAndLoadInOneProcess) {
  const accel::testing::TempDir dir("mesh_ckpt_tp_masters");
  const fs::path ckpt = dir / "ckpt";
  // What the optimizer steps: the fp32 masters and their AdamW moments, whole.
  auto optimizer_state = [](AcceleratedOptimizer& opt, bool gather) {
    const auto* masters = opt.master_weights();
    EXPECT_NE(masters, nullptr);
    Weights out;
    for (size_t m = 0; m < masters->masters().size(); ++m) {
      const auto& param = masters->model_params()[m];
      const auto& master = masters->masters()[m];
      auto& st = static_cast<torch::optim::AdamWParamState&>(*opt.optimizer().state().at(master.unsafeGetTensorImpl()));
      const auto key = std::to_string(m);
      // Copies: a replicated tensor "gathers" into itself, which later steps change.
      out["master." + key] = (gather ? full_tensor_parallel_parameter(param, master) : master).clone();
      out["exp_avg." + key] = (gather ? full_tensor_parallel_parameter(param, st.exp_avg()) : st.exp_avg()).clone();
    }
    return out;
  };
  auto bf16_masters = [](ParallelismConfig c) {
    return AcceleratorOptions().parallelism_config(c).mixed_precision("bf16").master_weights(true);
  };
  run_distributed(2, [&] {
    ParallelismConfig tp;
    tp.tp_size = 2;
    Accelerator acc(bf16_masters(tp));
    seed_cpu(5);
    gpt2::GPT2 model(config());
    gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    for (int s = 0; s < kSaveAt; ++s) train_step(acc, prepared, *opt, s);
    const auto at_save = optimizer_state(*opt, true);
    acc.save_state(ckpt);
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    const auto straight = optimizer_state(*opt, true);
    const auto straight_model = whole(acc, prepared);

    acc.load_state(ckpt);
    expect_equal(optimizer_state(*opt, true), at_save, "reloaded");
    for (int s = kSaveAt; s < kSteps; ++s) train_step(acc, prepared, *opt, s);
    expect_equal(optimizer_state(*opt, true), straight, "after resuming on the same layout");
    expect_equal(whole(acc, prepared), straight_model, "bf16 model after resuming on the same layout");
    if (acc.is_main_process()) write(at_save, dir / "at_save.safetensors");
    acc.wait_for_everyone();
  });
  // One process, no tensor parallelism: the masters and moments, recut whole.
  run_distributed(1, [&] {
    Accelerator acc(AcceleratorOptions().mixed_precision("bf16").master_weights(true));
    seed_cpu(99);
    gpt2::GPT2 model(config());
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    train_step(acc, prepared, *opt, 0);  // moments of its own, which the load must replace
    acc.load_state(ckpt);
    expect_equal(optimizer_state(*opt, false), read(dir / "at_save.safetensors"), "loaded in one process");
  });
}

TEST(MeshShardedCheckpoint, TpTimesShardingWithBf16MasterWeightsResumesOnTheSameLayout) {
  // ZeRO keeps the fp32 masters in its shards, full_shard keeps fp32 pieces.
  for (const auto strategy : {ShardingStrategy::shard_grad_op, ShardingStrategy::full_shard}) {
    const accel::testing::TempDir dir("mesh_ckpt_tp_bf16");
    save_and_resume(AcceleratorOptions()
                        .parallelism_config(mesh_of(2, 1))
                        .mixed_precision("bf16")
                        .master_weights(true)
                        .sharding(sharding(strategy)),
                    dir.path());
  }
}
