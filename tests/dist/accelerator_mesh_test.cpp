// The Accelerator on a device mesh (AcceleratorOptions::parallelism_config
// or Accelerate's PARALLELISM_CONFIG_* variables): DDP over the mesh's
// data-parallel ranks only, each data-parallel rank's own batches (the
// tensor-parallel ranks of a replica share theirs), clip_grad_norm_ over
// the whole model's gradient with tensor-parallel slices counted once, and
// gather_for_metrics without the replicas' duplicates; get_state_dict and
// save_model with the slices gathered whole.
//
// The training test is the GPT-2 example's tiny model at tp=2 x dp_shard=2
// on 4 ranks against one process: 3 AdamW steps with clipping active, the
// same losses and norms, and every parameter (reassembled from its slices)
// within 1e-5. Each of the three mechanisms above, taken away, makes it fail.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>

#include "accel/accelerator.h"
#include "accel/checkpoint/model_files.h"
#include "accel/data/data_loader.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/gpt2_one_process.h"
#include "support/gpt2_split.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr accel::testing::Gpt2Run kRun{.rows_per_step = 4, .rows_seed = 700, .model_seed = 11};
constexpr int64_t kRowsPerStep = kRun.rows_per_step, kSeq = kRun.seq;
constexpr double kMaxNorm = kRun.max_norm;

using Trace = accel::testing::Gpt2Trace;
torch::Tensor all_rows(int64_t vocab) { return accel::testing::token_rows(kRun, vocab); }
std::shared_ptr<torch::optim::AdamW> adamw(gpt2::GPT2& model) {
  return accel::testing::adamw(kRun, model->parameters());
}
Trace single_process() { return accel::testing::one_process(kRun); }

// The loop a user writes, unchanged from plain data parallel: only the
// options and the model's split differ. Then save_model into `out`.
Trace on_mesh(Accelerator& acc, const std::filesystem::path& out) {
  const DeviceMesh* mesh = acc.device_mesh();
  EXPECT_NE(mesh, nullptr);
  seed_cpu(11);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  gpt2::parallelize_tensor(model, mesh->group("tp"));
  const auto rows = all_rows(model->options().vocab_size());
  const int64_t per_rank = kRowsPerStep / acc.data_parallel_size();
  auto data =
      make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"tokens", rows}}), DataLoaderOptions(per_rank));
  auto [prepared, opt, loader] = acc.prepare(model, adamw(model), data);
  Trace t;
  for (auto& batch : loader) {
    const auto& tokens = batch["tokens"];
    EXPECT_EQ(tokens.size(0), per_rank);
    auto loss = prepared(tokens.narrow(1, 0, kSeq).contiguous(), tokens.narrow(1, 1, kSeq).contiguous());
    acc.backward(loss);
    t.norms.push_back(acc.clip_grad_norm_(model->parameters(), kMaxNorm).item<double>());
    opt->step();
    opt->zero_grad();
    // The whole batch's loss: the mean of the data-parallel ranks' equal parts.
    t.losses.push_back(acc.gather_for_metrics(loss.detach()).mean().item<double>());
  }
  for (const auto& p : model->named_parameters()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    t.params[p.key()] = dim < 0 ? p.value().detach().clone()
                                : accel::testing::reassemble(p.value().detach(), dim, packed, mesh->group("tp"));
    // Cutting the whole tensor again gives this rank's slice back.
    EXPECT_TRUE(tensor_parallel_slice_of(p.value(), t.params[p.key()]).equal(p.value())) << p.key();
  }
  // get_state_dict and save_model gather the slices whole: the file loads
  // into the unsplit model with exactly the reassembled weights.
  for (const auto& [name, tensor] : acc.get_state_dict(prepared)) {
    if (t.params.count(name)) EXPECT_TRUE(tensor.equal(t.params.at(name))) << name;
  }
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

ParallelismConfig tp_times_dp() {
  ParallelismConfig c;
  c.dp_shard_size = 2;
  c.tp_size = 2;
  return c;
}

}  // namespace

TEST(AcceleratorMesh, TensorTimesDataParallelGPT2EqualsOneProcess) {
  const accel::testing::TempDir dir("accelerator_mesh_model");
  run_distributed(4, [&] {
    const auto ref = single_process();
    Accelerator acc(AcceleratorOptions().parallelism_config(tp_times_dp()));
    EXPECT_EQ(acc.num_processes(), 4);
    EXPECT_EQ(acc.data_parallel_size(), 2);
    // Mesh order dp_shard, tp: ranks 0,1 are replica 0 and ranks 2,3 replica 1.
    EXPECT_EQ(acc.data_parallel_index(), acc.process_index() / 2);
    expect_matches(ref, on_mesh(acc, dir.path()));
  });
}

TEST(AcceleratorMesh, AccelerateVariablesBuildTheMeshAndTensorRanksShareBatches) {
  run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().env(
        env_from_map({{"ACCELERATE_USE_PARALLELISM_CONFIG", "True"}, {"PARALLELISM_CONFIG_TP_SIZE", "2"}})));
    ASSERT_NE(acc.device_mesh(), nullptr);
    EXPECT_EQ(acc.device_mesh()->size("tp"), 2);
    EXPECT_EQ(acc.data_parallel_size(), 1);
    EXPECT_EQ(acc.data_parallel_index(), 0);
    // Both tensor-parallel ranks see every sample, in the same shuffled
    // order (the seed is agreed although each loader counts one process),
    // and gather_for_metrics gives each sample once, not once per rank.
    seed_cpu(100 + acc.process_index());  // different default seeds per rank
    auto ids = torch::arange(10).to(torch::kFloat).unsqueeze(1);
    auto data =
        make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"id", ids}}), DataLoaderOptions(4).shuffle(true));
    auto loader = acc.prepare(data);
    std::vector<torch::Tensor> seen, gathered;
    for (auto& b : loader) {
      seen.push_back(b["id"]);
      gathered.push_back(acc.gather_for_metrics(b["id"]));
    }
    auto mine = torch::cat(seen).reshape(-1);
    EXPECT_EQ(mine.numel(), 10);
    EXPECT_TRUE(std::get<0>(mine.sort()).equal(torch::arange(10).to(torch::kFloat))) << mine;
    EXPECT_TRUE(gather(mine.unsqueeze(0)).select(0, 1).equal(mine)) << "the tp ranks' orders differ";
    EXPECT_TRUE(torch::cat(gathered).reshape(-1).equal(mine));
  });
}

TEST(AcceleratorMesh, RefusesWhatItCannotComposeYet) {
  run_distributed(2, [] {
    ParallelismConfig too_big;
    too_big.tp_size = 4;
    accel::testing::expect_error([&] { Accelerator acc(AcceleratorOptions().parallelism_config(too_big)); },
                                 {"tp_size 4", "world size (2)"});
    // (Checkpoints of a tensor-parallel model with fp32 master weights:
    // mesh_sharded_checkpoint_test.cpp.)
  });
}

TEST(AcceleratorMesh, FullShardOverReplicasOfShardGroupsIsHybridShard) {
  // FSDP2's HSDP: dp_replicate=2 x dp_shard=2 shards each parameter over 2
  // ranks and replicates over the other 2, and trains as one process does.
  namespace ft = accel::testing::fsdp_training;
  ParallelismConfig hsdp;
  hsdp.dp_replicate_size = 2;
  hsdp.dp_shard_size = 2;
  const ft::Variant v{.world = 4, .clip = 0.05, .mesh = hsdp};
  ft::expect_equals_reference(v);
  run_distributed(4, [&] {
    ft::Trainer t(v);
    EXPECT_EQ(t.sharding().process_group()->getSize(), 2);
    const auto m = t.sharding().memory();
    EXPECT_EQ(m.shards * 2, 2 * m.full);  // split in two, not four
  });
}
