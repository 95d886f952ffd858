// 2D parallel: tensor parallel composed with parameter sharding, as FSDP2
// composes with TP (TorchTitan). GPT-2 tiny is split over tp=2 first, then
// each rank's own parameters (its tp slices and the replicated rest) are
// fully sharded over the mesh's dp_shard=2 ranks (or ZeRO-2 over them), on
// 4 ranks over Gloo.
//
// Checked against one process on the whole batch: 3 AdamW steps of 2
// accumulated micro-batches with clipping active give the same losses and
// gradient norms, and every parameter, reassembled by the test from the
// sharded engine's local slices, within 1e-5; get_state_dict and save_model
// give those weights whole, loadable into the unsplit model. The ranks
// together hold each slice's elements once (1/(tp * dp_shard) of a sliced
// parameter per rank on average). What is not built is refused by name.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "accel/accelerator.h"
#include "accel/big_model/empty_init.h"
#include "accel/checkpoint/model_files.h"
#include "accel/data/data_loader.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/util/env.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/gpt2_split.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr int kSteps = 3, kAccumulation = 2;
constexpr int64_t kRowsPerMicroBatch = 4, kSeq = 32;  // rows of all data-parallel ranks together
constexpr double kMaxNorm = 0.5, kLr = 1e-3;

torch::Tensor all_rows(int64_t vocab) {
  auto g = at::detail::createCPUGenerator(701);
  return torch::randint(0, vocab, {kSteps * kAccumulation * kRowsPerMicroBatch, kSeq + 1}, g);
}

struct Trace {
  std::vector<double> losses, norms;
  std::map<std::string, torch::Tensor> params;
};

std::shared_ptr<torch::optim::AdamW> adamw(gpt2::GPT2& model) {
  return std::make_shared<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(kLr).weight_decay(0.1));
}

// Plain LibTorch, one process: each step on all the rows of its micro-batches.
Trace single_process() {
  seed_cpu(11);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  auto opt = adamw(model);
  const auto rows = all_rows(model->options().vocab_size());
  const int64_t per_step = kAccumulation * kRowsPerMicroBatch;
  Trace t;
  for (int step = 0; step < kSteps; ++step) {
    auto batch = rows.narrow(0, step * per_step, per_step);
    opt->zero_grad();
    auto loss = model(batch.narrow(1, 0, kSeq).contiguous(), batch.narrow(1, 1, kSeq).contiguous());
    loss.backward();
    t.norms.push_back(clip_grad_norm(model->parameters(), kMaxNorm).item<double>());
    opt->step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) t.params[p.key()] = p.value().detach().clone();
  return t;
}

ParallelismConfig tp_times_dp_shard() {
  ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = 2;
  return c;
}

AcceleratorOptions options(ShardingStrategy strategy, ParallelismConfig mesh = tp_times_dp_shard()) {
  return AcceleratorOptions()
      .parallelism_config(mesh)
      .gradient_accumulation_steps(kAccumulation)
      .sharding(ShardingOptions().strategy(strategy).transformer_cls_to_wrap({"GPT2Block"}));
}

// How train_2d makes its model.
struct Split {
  bool meta = false;  // every data-parallel rank but the first builds it without memory (init_empty_weights)
                      // and gets its slices' values from that rank
  bool sequence_parallel = false;  // the GPT-2 plan's sequence-parallel form
};

gpt2::GPT2 split_model(const Accelerator& acc, Split split = {}) {
  seed_cpu(11);
  auto build = [] { return gpt2::GPT2(gpt2::named_config("tiny")); };
  gpt2::GPT2 model = split.meta && acc.data_parallel_index() != 0 ? init_empty_weights(build) : build();
  gpt2::parallelize_tensor(model, acc.device_mesh()->group("tp"), split.sequence_parallel);
  return model;
}

// This rank's parameters as its tp slices (FSDP's full_state gathers the
// dp_shard pieces; otherwise the parameters are whole slices already),
// each reassembled whole by the test's own gather over tp.
std::map<std::string, torch::Tensor> reassembled(PreparedModelCore& core, gpt2::GPT2& model, const DeviceMesh& mesh) {
  std::map<std::string, torch::Tensor> local;
  if (core.sharding()) {
    for (const auto& [name, t] : core.sharding()->full_state()) local[name] = t;
  } else {
    for (const auto& p : model->named_parameters()) local[p.key()] = p.value().detach();
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    const auto& mine = local.at(p.key());
    out[p.key()] = dim < 0 ? mine.clone() : accel::testing::reassemble(mine, dim, packed, mesh.group("tp"));
  }
  return out;
}

// The loop a user writes for data parallel with accumulation, unchanged.
Trace train_2d(Accelerator& acc, const std::filesystem::path& out, Split split = {}) {
  auto model = split_model(acc, split);
  EXPECT_EQ(model->parameters().front().is_meta(), split.meta && acc.data_parallel_index() != 0);
  const auto rows = all_rows(model->options().vocab_size());
  const int64_t per_rank = kRowsPerMicroBatch / acc.data_parallel_size();
  auto data =
      make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"tokens", rows}}), DataLoaderOptions(per_rank));
  auto [prepared, opt, loader] = acc.prepare(model, adamw(model), data);
  Trace t;
  double loss_sum = 0;
  for (auto& batch : loader) {
    auto scope = acc.accumulate(prepared);
    const auto& tokens = batch["tokens"];
    auto loss = prepared(tokens.narrow(1, 0, kSeq).contiguous(), tokens.narrow(1, 1, kSeq).contiguous());
    acc.backward(loss);
    loss_sum += acc.gather_for_metrics(loss.detach()).mean().item<double>();
    if (acc.sync_gradients()) {
      t.norms.push_back(acc.clip_grad_norm_(model->parameters(), kMaxNorm).item<double>());
      t.losses.push_back(loss_sum / kAccumulation);  // equal micro-batches: the step's whole-batch loss
      loss_sum = 0;
    }
    opt->step();
    opt->zero_grad();
  }
  t.params = reassembled(prepared.core(), model, *acc.device_mesh());
  // get_state_dict and save_model gather the dp_shard pieces, then the tp
  // slices: the file loads into the unsplit model with exactly those weights.
  for (const auto& [name, tensor] : acc.get_state_dict(prepared))
    if (t.params.count(name)) EXPECT_TRUE(tensor.equal(t.params.at(name))) << name;
  acc.save_model(prepared, out);
  acc.wait_for_everyone();
  gpt2::GPT2 whole(gpt2::named_config("tiny"));
  const auto report = load_model_weights(*whole, out);
  EXPECT_TRUE(report.ok()) << report.describe();
  for (const auto& p : whole->named_parameters())
    EXPECT_TRUE(p.value().equal(t.params.at(p.key()))) << p.key() << " as save_model wrote it";
  return t;
}

void expect_matches(const Trace& ref, const Trace& got) {
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  ASSERT_EQ(got.norms.size(), ref.norms.size());
  for (size_t s = 0; s < ref.losses.size(); ++s) {
    EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-5) << "loss at step " << s;
    EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-5) << "gradient norm at step " << s;
  }
  EXPECT_GT(ref.norms[0], kMaxNorm);  // clipping acted, so the norm is tested
  ASSERT_EQ(got.params.size(), ref.params.size());
  for (const auto& [name, want] : ref.params) {
    ASSERT_TRUE(got.params.count(name)) << name;
    EXPECT_LT(max_diff(got.params.at(name), want), 1e-5) << name;
  }
}

}  // namespace

TEST(TensorParallelFSDP, TpTimesFullShardGPT2EqualsOneProcess) {
  const accel::testing::TempDir dir("tp_fsdp_model");
  run_distributed(4, [&] {
    const auto ref = single_process();
    Accelerator acc(options(ShardingStrategy::full_shard));
    EXPECT_EQ(acc.data_parallel_size(), 2);
    expect_matches(ref, train_2d(acc, dir.path()));
  });
}

TEST(TensorParallelFSDP, TpTimesHybridShardOnEightRanksEqualsOneProcess) {
  // HSDP x TP: dp_replicate=2 x dp_shard=2 x tp=2, the slices sharded over
  // 2 ranks and replicated over 2 more.
  ParallelismConfig mesh = tp_times_dp_shard();
  mesh.dp_replicate_size = 2;
  const accel::testing::TempDir dir("tp_hsdp_model");
  run_distributed(8, [&] {
    const auto ref = single_process();
    Accelerator acc(options(ShardingStrategy::full_shard, mesh));
    EXPECT_EQ(acc.data_parallel_size(), 4);
    expect_matches(ref, train_2d(acc, dir.path()));
  });
}

TEST(TensorParallelFSDP, SlicesBuiltWithoutMemoryGetTheFirstDataParallelRanksValues) {
  const accel::testing::TempDir dir("tp_fsdp_meta_model");
  run_distributed(4, [&] {
    const auto ref = single_process();
    Accelerator acc(options(ShardingStrategy::full_shard));
    expect_matches(ref, train_2d(acc, dir.path(), {.meta = true}));
  });
}

TEST(TensorParallelFSDP, WithSequenceParallelEqualsOneProcess) {
  // The norms' gradients, summed over tp by their hooks, then reduce-scattered over dp_shard.
  const accel::testing::TempDir dir("tp_fsdp_sp_model");
  run_distributed(4, [&] {
    const auto ref = single_process();
    Accelerator acc(options(ShardingStrategy::full_shard));
    expect_matches(ref, train_2d(acc, dir.path(), {.sequence_parallel = true}));
  });
}

TEST(TensorParallelFSDP, TpTimesZero2GPT2EqualsOneProcess) {
  const accel::testing::TempDir dir("tp_zero2_model");
  run_distributed(4, [&] {
    const auto ref = single_process();
    Accelerator acc(options(ShardingStrategy::shard_grad_op));
    expect_matches(ref, train_2d(acc, dir.path()));
  });
}

TEST(TensorParallelFSDP, NormsOfEveryTypeAreTheWholeModels) {
  // One backward on the first micro-batch's rows; norms too large to clip.
  run_distributed(4, [] {
    const std::vector<double> types{1.0, 2.0, 3.0, std::numeric_limits<double>::infinity()};
    seed_cpu(11);
    gpt2::GPT2 whole(gpt2::named_config("tiny"));
    const auto rows = all_rows(whole->options().vocab_size()).narrow(0, 0, kRowsPerMicroBatch);
    whole(rows.narrow(1, 0, kSeq).contiguous(), rows.narrow(1, 1, kSeq).contiguous()).backward();
    Accelerator acc(options(ShardingStrategy::full_shard).gradient_accumulation_steps(1));
    auto model = split_model(acc);
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    const int64_t per_rank = kRowsPerMicroBatch / acc.data_parallel_size();
    const auto mine = rows.narrow(0, acc.data_parallel_index() * per_rank, per_rank);
    acc.backward(prepared(mine.narrow(1, 0, kSeq).contiguous(), mine.narrow(1, 1, kSeq).contiguous()));
    for (double type : types) {
      const double want = torch::nn::utils::clip_grad_norm_(whole->parameters(), 1e9, type);
      EXPECT_NEAR(acc.clip_grad_norm_(model->parameters(), 1e9, type).item<double>(), want, 1e-5 * want)
          << "norm type " << type;
    }
  });
}

TEST(TensorParallelFSDP, RanksTogetherHoldEachSliceOnce) {
  run_distributed(4, [] {
    Accelerator acc(options(ShardingStrategy::full_shard));
    auto model = split_model(acc);
    seed_cpu(11);
    gpt2::GPT2 whole(gpt2::named_config("tiny"));
    auto [prepared, opt] = acc.prepare(model, adamw(model));
    auto& sharding = dynamic_cast<fsdp::FullyShardedModel&>(*prepared.core().sharding());
    EXPECT_EQ(sharding.process_group()->getSize(), 2);  // the mesh's dp_shard ranks, not the world
    // Elements of this rank's pieces (what its optimizer steps) of sliced
    // and of replicated parameters; the whole model's elements of each.
    int64_t sliced = 0, replicated = 0, local = 0, whole_sliced = 0, whole_replicated = 0;
    const auto whole_params = whole->named_parameters();
    for (const auto& p : model->named_parameters()) {
      const auto [unit, index] = sharding.find(p.value());
      ASSERT_NE(unit, nullptr) << p.key();
      const int64_t piece = unit->piece(index).numel();
      const bool is_slice = accel::testing::gpt2_split_of(p.key()).first >= 0;
      EXPECT_EQ(is_tensor_parallel_slice(p.value()), is_slice) << p.key();
      (is_slice ? sliced : replicated) += piece;
      local += p.value().numel();
      (is_slice ? whole_sliced : whole_replicated) += whole_params[p.key()].numel();
    }
    auto totals = torch::tensor({sliced, replicated}, torch::kLong);
    all_reduce_(totals);
    // Summed over the 4 ranks, each sliced element is held once and each
    // replicated one once per tp rank: the pieces partition the slices.
    EXPECT_EQ(totals[0].item<int64_t>(), whole_sliced);
    EXPECT_EQ(totals[1].item<int64_t>(), 2 * whole_replicated);
    // A rank's shard is half its slices (padding aside), a quarter of the
    // sliced model: each rank holds 1/(tp * dp_shard) of it on average.
    EXPECT_LE(sliced + replicated, local / 2 + static_cast<int64_t>(sharding.units().size()));
    EXPECT_GE(sliced + replicated, local / 2 - static_cast<int64_t>(sharding.units().size()));
    EXPECT_EQ(2 * (local - whole_replicated), whole_sliced);
  });
}

TEST(TensorParallelFSDP, RefusesWhatIsNotBuilt) {
  run_distributed(4, [] {
    const accel::testing::TempDir dir("tp_fsdp_refusals");
    accel::testing::expect_error(
        [&] {
          auto o = options(ShardingStrategy::hybrid_shard);
          o.sharding()->hybrid_shard_size(4);
          Accelerator acc(o);
        },
        {"hybrid_shard_size is 4", "dp_shard_size is 2"});
    // (save_state / load_state of tp x full_shard and tp x ZeRO-2:
    // mesh_sharded_checkpoint_test.cpp.)
    // A DeepSpeed config's gradient_clipping: the engine's clip knows no tp.
    const auto config = dir.path() / "ds.json";
    std::ofstream(config) << R"({"zero_optimization": {"stage": 2}, "gradient_clipping": 0.5})";
    Accelerator ds(AcceleratorOptions()
                       .parallelism_config(tp_times_dp_shard())
                       .env(env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                          {"ACCELERATE_DEEPSPEED_CONFIG_FILE", config.string()}})));
    auto ds_model = split_model(ds);
    accel::testing::expect_error([&] { ds.prepare(ds_model, adamw(ds_model)); },
                                 {"gradient_clipping (0.5)", "tp_size 2"});
  });
}
