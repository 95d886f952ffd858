// save_state / load_state of pipeline stages prepared by the Accelerator
// (parallel/pipeline/accelerated_step.h): GPT-2 tiny cut into 2 stages,
// each rank's StageModule and AdamW prepared, 2 steps of pipeline_step
// (1F1B, 4 micro-batches per replica, clip_pipeline_grad_norm_ active),
// save_state; then fresh processes on the same layout, from other initial
// weights and AdamW moments of their own, load_state and run 2 more steps:
// every stage's weights equal, bit for bit, those of 4 steps straight.
//
//   pp=2 x dp=2 with DDP: the first data-parallel rank of each stage writes
//     its stage's slices and its AdamW state by parameter name; the tied
//     embedding once (the first stage's), which both copies take on load;
//     `accel merge-weights` joins the folder into exactly the weights the
//     stages held; one process (pp=1) loads model and AdamW state exactly,
//     and its 2 more steps equal the 4 straight within 1e-6.
//   pp=2 x tp=2: the same with tensor-parallel slices (4 writers); pp=2
//     without tp loads it too (exactly) and resumes within 1e-6.
//   pp=2 x dp_shard=2 with ZeRO-1 (bit for bit) and ZeRO-2 (within 1e-5:
//     its tied copies drift by rounding, see TiedDrift): each stage's
//     shards in a folder of their own.
//   pp=2 x dp=2 with bf16 and fp32 master weights: the masters saved
//     beside the AdamW state; resumes bit for bit.
//   Refused by name: a whole model's optimizer state (numbered over all
//     its parameters) loaded into stages.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "accel/accelerator.h"
#include "accel/amp/master_weights.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/optim/schedules.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/accelerated_step.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/gpt2_split.h"
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
constexpr int64_t kRowsPerStep = 8, kSeq = 16, kMicro = 4;
constexpr double kMaxNorm = 0.5;
using Weights = std::map<std::string, torch::Tensor>;
const std::string kWte = "transformer.wte.weight";

gpt2::GPT2Options config() { return gpt2::named_config("tiny"); }

torch::Tensor all_rows() {
  return accel::testing::resume_rows(kSteps, kRowsPerStep, kSeq, config().vocab_size(), /*seed=*/77);
}

std::shared_ptr<torch::optim::AdamW> adamw(const std::vector<torch::Tensor>& params) {
  return accel::testing::resume_adamw(params);
}

std::pair<torch::Tensor, torch::Tensor> batch_of(int step, int64_t rows, int64_t index) {
  auto b = all_rows().narrow(0, step * kRowsPerStep + index * rows, rows);
  return {b.narrow(1, 0, kSeq).contiguous(), b.narrow(1, 1, kSeq).contiguous()};
}

void write(const Weights& w, const fs::path& file) {
  safetensors::save_file(safetensors::NamedTensors(w.begin(), w.end()), file);
}

Weights read(const fs::path& file) {
  Weights out;
  for (const auto& item : safetensors::load_file(file)) out[item.key()] = item.value();
  return out;
}

// `near`: a tensor compared within `tolerance` instead of exactly ("*": all).
void expect_equal(const Weights& got, const Weights& want, const std::string& what, const std::string& near = "",
                  double tolerance = 0) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name << " " << what;
    if (name == near || near == "*")
      EXPECT_LT(max_diff(got.at(name), t), tolerance) << name << " " << what;
    else
      EXPECT_TRUE(got.at(name).equal(t)) << name << " " << what << ": differs by " << max_diff(got.at(name), t);
  }
}

// A linear decay over the steps: the learning rate differs at each step,
// so a resume that lost the scheduler's state would step differently.
// split_batches: the scheduler steps once per step whatever the number of
// data-parallel ranks, as in the one-process run.
std::shared_ptr<LRScheduler> schedule(torch::optim::Optimizer& opt) { return get_scheduler("linear", opt, 0, 6); }

AcceleratorOptions with_schedule(AcceleratorOptions options) { return options.split_batches(true); }

// One pipeline rank's run: its stage of the model made from `seed`, prepared.
struct StageRun {
  explicit StageRun(const AcceleratorOptions& options, uint64_t seed) : acc(with_schedule(options)) {
    const DeviceMesh* mesh = acc.device_mesh();
    seed_cpu(seed);
    model = gpt2::GPT2(config());
    if (mesh->config().tp_size > 1) gpt2::parallelize_tensor(model, mesh->group("tp"));
    stage = StageModule(*model, gpt2::pipeline_stage(model, mesh->group("pp")));
    auto optimizer = adamw(stage->parameters());
    auto [p, o, sc] = acc.prepare(stage, optimizer, schedule(*optimizer));
    prepared.emplace(std::move(p));
    opt = o;
    scheduler = sc;
  }

  void step(int s) {
    const int64_t rows = kRowsPerStep / acc.data_parallel_size();
    const auto [inputs, targets] = batch_of(s, rows, acc.data_parallel_index());
    pipeline_step(acc, *prepared, PipelineScheduleKind::one_f_one_b, kMicro, inputs, targets);
    clip_pipeline_grad_norm_(acc, *prepared, kMaxNorm);
    opt->step();
    scheduler->step();
    opt->zero_grad();
  }

  // This rank's stage, tensor-parallel slices reassembled, by whole names.
  Weights weights() {
    const DeviceMesh* mesh = acc.device_mesh();
    const bool tp = mesh->config().tp_size > 1;
    Weights out;
    for (const auto& p : (*prepared).module()->named_parameters()) {
      const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
      out[p.key()] = tp && dim >= 0 ? accel::testing::reassemble(p.value().detach(), dim, packed, mesh->group("tp"))
                                    : p.value().detach().clone();
    }
    return out;
  }

  Accelerator acc;
  gpt2::GPT2 model{nullptr};
  StageModule stage{nullptr};
  std::optional<PreparedModel<StageModule>> prepared;
  std::shared_ptr<AcceleratedOptimizer> opt;
  std::shared_ptr<AcceleratedScheduler> scheduler;
};

fs::path rank_file(const fs::path& dir, const std::string& what, int rank) {
  return dir / (what + "_rank" + std::to_string(rank) + ".safetensors");
}

// How a tied copy on the later stage may differ from the earlier one's:
// under ZeRO-2 the two stages sum the tied gradients in other orders
// (pipeline/accelerated_step.cpp, TiedGradientRecorder), so the copies
// differ by rounding even in a straight run; the checkpoint holds the
// first stage's, which both copies take on load. The resumed run then
// differs from the straight one by that rounding (every stage, through
// the activations), not bit for bit.
struct TiedDrift {
  std::string name;  // "" when the copies stay identical
  double tolerance = 0;
};

// The whole model from every rank's stage files (ranks in stage order): a
// weight held by two stages (a tied copy, a replica's) must be the same on
// each; the first rank's is kept.
Weights join(const fs::path& dir, const std::string& what, int ranks, const TiedDrift& drift) {
  Weights out;
  for (int r = 0; r < ranks; ++r)
    for (const auto& [name, t] : read(rank_file(dir, what, r))) {
      auto [it, fresh] = out.emplace(name, t);
      if (fresh) continue;
      if (name == drift.name)
        EXPECT_LT(max_diff(it->second, t), drift.tolerance) << name << " between ranks' " << what;
      else
        EXPECT_TRUE(it->second.equal(t)) << name << " differs between ranks' " << what;
    }
  return out;
}

// Trains 2 steps on `ranks` ranks and saves, then 2 more; fresh processes
// load the folder and run the same 2 steps: bit for bit the same. Leaves
// the whole weights at the save and after 4 steps in dir/at_save.safetensors
// and dir/straight.safetensors.
void save_and_resume(const AcceleratorOptions& options, int ranks, const fs::path& dir, const TiedDrift& drift = {}) {
  const fs::path ckpt = dir / "ckpt";
  run_distributed(ranks, [&] {
    StageRun run(options, 17);
    for (int s = 0; s < kSaveAt; ++s) run.step(s);
    write(run.weights(), rank_file(dir, "at_save", run.acc.process_index()));
    run.acc.save_state(ckpt);
    for (int s = kSaveAt; s < kSteps; ++s) run.step(s);
    write(run.weights(), rank_file(dir, "straight", run.acc.process_index()));
  });
  run_distributed(ranks, [&] {
    StageRun run(options, 99);  // other weights: load_state must replace them all
    run.step(0);                // and AdamW moments and step counts of its own
    run.acc.load_state(ckpt);
    const int rank = run.acc.process_index();
    // Under drift the later stage's copy restarts from the first stage's value.
    const bool later = run.stage->stage().index > run.stage->stage().tied_stage;
    const std::string near = later ? drift.name : "";
    expect_equal(run.weights(), read(rank_file(dir, "at_save", rank)), "loaded", near, drift.tolerance);
    for (int s = kSaveAt; s < kSteps; ++s) run.step(s);
    expect_equal(run.weights(), read(rank_file(dir, "straight", rank)), "after resuming on the same layout",
                 drift.name.empty() ? "" : "*", drift.tolerance);
  });
  write(join(dir, "at_save", ranks, drift), dir / "at_save.safetensors");
  write(join(dir, "straight", ranks, drift), dir / "straight.safetensors");
}

// `accel merge-weights` joins the stages' slices into exactly the weights they held.
void expect_merges(const fs::path& dir) {
  const auto cli = accel::testing::run_program(
      {accel::testing::binary_path("accel"), "merge-weights", (dir / "ckpt").string(), (dir / "merged").string()},
      dir / "merge.log");
  ASSERT_EQ(cli.status, 0) << cli.output;
  const auto whole = read(dir / "at_save.safetensors");
  expect_equal(read(dir / "merged" / "model.safetensors"), whole, "as merged");
  gpt2::GPT2 reference(config());
  EXPECT_EQ(whole.size(), reference->named_parameters().size()) << "every parameter on some stage";
}

// The names a slice file holds parts of.
std::vector<std::string> wholes_in(const fs::path& file) { return SliceSet({file}).wholes(); }

bool holds(const fs::path& file, const std::string& whole) {
  for (const auto& w : wholes_in(file))
    if (w == whole) return true;
  return false;
}

// One process without pipeline: loads the pp checkpoint's weights exactly,
// and with its AdamW state its 2 more steps match the 4 straight.
void resume_in_one_process(const fs::path& dir) {
  run_distributed(1, [&] {
    Accelerator acc(with_schedule(AcceleratorOptions()));
    seed_cpu(99);
    gpt2::GPT2 model(config());
    auto optimizer = adamw(model->parameters());
    auto [prepared, opt, scheduler] = acc.prepare(model, optimizer, schedule(*optimizer));
    auto one_step = [&](int s) {
      const auto [inputs, targets] = batch_of(s, kRowsPerStep, 0);
      acc.backward(prepared(inputs, targets));
      acc.clip_grad_norm_(prepared.module()->parameters(), kMaxNorm);
      opt->step();
      scheduler->step();
      opt->zero_grad();
    };
    one_step(0);
    acc.load_state(dir / "ckpt");
    Weights got;
    for (const auto& p : model->named_parameters()) got[p.key()] = p.value().detach().clone();
    expect_equal(got, read(dir / "at_save.safetensors"), "loaded in one process");
    for (int s = kSaveAt; s < kSteps; ++s) one_step(s);
    const auto straight = read(dir / "straight.safetensors");
    for (const auto& p : model->named_parameters())
      EXPECT_LT(max_diff(p.value(), straight.at(p.key())), 1e-6) << p.key() << " resumed in one process";
  });
}

// dp: DDP's replicas; dp_shard: the data-parallel ranks ZeRO shards over.
ParallelismConfig pp2(int dp, int tp, int dp_shard = 1) {
  ParallelismConfig c;
  c.pp_size = 2;
  c.dp_replicate_size = dp;
  c.tp_size = tp;
  c.dp_shard_size = dp_shard;
  return c;
}

}  // namespace

TEST(PipelineAcceleratorCheckpoint, TwoStagesByTwoDdpResumesMergesAndLoadsInOneProcess) {
  const accel::testing::TempDir dir("pp_ckpt_ddp");
  save_and_resume(AcceleratorOptions().parallelism_config(pp2(2, 1)), 4, dir.path());
  // The first data-parallel rank of each stage writes: 2 files of each,
  // the tied embedding (and its AdamW state) only in the first stage's.
  const auto ckpt = dir / "ckpt";
  EXPECT_FALSE(fs::exists(ckpt / "model_fsdp_rank2.safetensors"));
  EXPECT_TRUE(holds(ckpt / "model_fsdp_rank0.safetensors", kWte));
  EXPECT_FALSE(holds(ckpt / "model_fsdp_rank1.safetensors", kWte)) << "the tied copy is written once";
  EXPECT_TRUE(holds(ckpt / "model_fsdp_rank1.safetensors", "transformer.ln_f.weight"));
  EXPECT_TRUE(holds(ckpt / "fsdp_optimizer_rank0.safetensors", "0/" + kWte + "/exp_avg_sq"));
  EXPECT_FALSE(holds(ckpt / "fsdp_optimizer_rank1.safetensors", "0/" + kWte + "/exp_avg_sq"));
  EXPECT_TRUE(holds(ckpt / "fsdp_optimizer_rank1.safetensors", "0/transformer.ln_f.weight/exp_avg"));
  expect_merges(dir.path());
  resume_in_one_process(dir.path());
}

TEST(PipelineAcceleratorCheckpoint, TwoStagesByTwoTensorParallelResumesAndMerges) {
  const accel::testing::TempDir dir("pp_ckpt_tp");
  save_and_resume(AcceleratorOptions().parallelism_config(pp2(1, 2)), 4, dir.path());
  for (int w = 0; w < 4; ++w)
    EXPECT_TRUE(fs::exists(dir / "ckpt" / ("fsdp_optimizer_rank" + std::to_string(w) + ".safetensors"))) << w;
  expect_merges(dir.path());
  resume_in_one_process(dir.path());
  // The same 2 stages without tp (2 processes): each cuts nothing, takes
  // its stage's whole tensors and AdamW state out of the tp ranks' blocks.
  const auto at_save = read(dir / "at_save.safetensors"), straight = read(dir / "straight.safetensors");
  run_distributed(2, [&] {
    StageRun run(AcceleratorOptions().parallelism_config(pp2(1, 1)), 99);
    run.step(0);
    run.acc.load_state(dir / "ckpt");
    for (const auto& [name, t] : run.weights()) EXPECT_TRUE(t.equal(at_save.at(name))) << name << " loaded without tp";
    for (int s = kSaveAt; s < kSteps; ++s) run.step(s);
    for (const auto& [name, t] : run.weights())
      EXPECT_LT(max_diff(t, straight.at(name)), 1e-6) << name << " resumed without tp";
  });
}

// ZeRO-1 (shard_optimizer) keeps the tied copies identical: bit for bit;
// ZeRO-2 (shard_grad_op) within its copies' rounding drift (TiedDrift).
TEST(PipelineAcceleratorCheckpoint, TwoStagesByTwoZeroResumesOnTheSameLayout) {
  for (const auto strategy : {ShardingStrategy::shard_optimizer, ShardingStrategy::shard_grad_op}) {
    SCOPED_TRACE(to_string(strategy));
    const accel::testing::TempDir dir("pp_ckpt_zero");
    const TiedDrift drift = strategy == ShardingStrategy::shard_grad_op ? TiedDrift{kWte, 1e-5} : TiedDrift{};
    save_and_resume(
        AcceleratorOptions().parallelism_config(pp2(1, 1, 2)).sharding(ShardingOptions().strategy(strategy)), 4,
        dir.path(), drift);
    // Each stage's ZeRO shards in a folder of their own.
    for (int g = 0; g < 2; ++g)
      for (int d = 0; d < 2; ++d)
        EXPECT_TRUE(fs::exists(dir / "ckpt" / ("zero_tp" + std::to_string(g)) /
                               ("zero_shard_rank" + std::to_string(d) + ".safetensors")))
            << g << " " << d;
    expect_merges(dir.path());
  }
}

// bf16 stages trained through fp32 master weights: the masters are saved
// with the AdamW state (sliced like their parameters, the tied one once)
// and restored, so bf16 weights and fp32 masters resume bit for bit.
// The stage's weights and its fp32 masters ("master/<name>").
Weights with_masters(StageRun& run) {
  auto out = run.weights();
  const auto* masters = run.opt->master_weights();
  EXPECT_NE(masters, nullptr);
  for (const auto& p : (*run.prepared).module()->named_parameters())
    for (size_t m = 0; m < masters->model_params().size(); ++m)
      if (masters->model_params()[m].is_same(p.value())) out["master/" + p.key()] = masters->masters()[m].clone();
  return out;
}

TEST(PipelineAcceleratorCheckpoint, TwoStagesWithBf16MasterWeightsResumeBitForBit) {
  const accel::testing::TempDir dir("pp_ckpt_masters");
  const auto options = AcceleratorOptions().parallelism_config(pp2(2, 1)).mixed_precision("bf16").master_weights(true);
  run_distributed(4, [&] {
    StageRun run(options, 17);
    for (int s = 0; s < kSaveAt; ++s) run.step(s);
    const auto at_save = with_masters(run);
    EXPECT_EQ(at_save.at("master/transformer.wte.weight").scalar_type(), torch::kFloat);
    EXPECT_EQ(run.weights().begin()->second.scalar_type(), torch::kBFloat16);
    write(at_save, rank_file(dir, "at_save", run.acc.process_index()));
    run.acc.save_state(dir / "ckpt");
    for (int s = kSaveAt; s < kSteps; ++s) run.step(s);
    write(with_masters(run), rank_file(dir, "straight", run.acc.process_index()));
  });
  run_distributed(4, [&] {
    StageRun run(options, 99);
    run.step(0);
    run.acc.load_state(dir / "ckpt");
    const int rank = run.acc.process_index();
    expect_equal(with_masters(run), read(rank_file(dir, "at_save", rank)), "loaded");
    for (int s = kSaveAt; s < kSteps; ++s) run.step(s);
    expect_equal(with_masters(run), read(rank_file(dir, "straight", rank)), "after resuming on the same layout");
  });
  const auto ckpt = dir / "ckpt";
  EXPECT_TRUE(holds(ckpt / "fsdp_optimizer_rank0.safetensors", "masters/0/" + kWte));
  EXPECT_FALSE(holds(ckpt / "fsdp_optimizer_rank1.safetensors", "masters/0/" + kWte));
  EXPECT_TRUE(holds(ckpt / "fsdp_optimizer_rank1.safetensors", "masters/0/transformer.ln_f.weight"));
}

TEST(PipelineAcceleratorCheckpoint, RefusesWhatItDoesNotBuildByName) {
  const accel::testing::TempDir dir("pp_ckpt_refusals");
  // A whole model's optimizer state, numbered over all its parameters,
  // saved by one process.
  run_distributed(1, [&] {
    Accelerator acc(with_schedule(AcceleratorOptions()));
    gpt2::GPT2 model(config());
    auto optimizer = adamw(model->parameters());
    auto [prepared, opt, scheduler] = acc.prepare(model, optimizer, schedule(*optimizer));
    acc.save_state(dir / "whole");
  });
  run_distributed(2, [&] {
    StageRun run(AcceleratorOptions().parallelism_config(pp2(1, 1)), 17);
    accel::testing::expect_error([&] { run.acc.load_state(dir / "whole"); },
                                 {"load_state", "holds no state of optimizer 0 by parameter name",
                                  "numbered over all its parameters", "pp_size 2", "Nothing was loaded"});
  });
}
