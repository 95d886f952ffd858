// Context parallel through the Accelerator: the GPT-2 example's tiny model
// at dp_shard=2 x cp=2 on 4 ranks, written as the plain data-parallel loop
// plus the sequence split and a ContextParallelScope around the forward,
// equals one process after 3 AdamW steps with clipping (losses, norms and
// every parameter within 1e-5). What the Accelerator contributes: the cp
// ranks of a replica read the same batches (data_parallel_size() is the dp
// size), and DDP averages the gradients over "dp_cp", so each replica's cp
// ranks end with the whole sequence's gradient. Also cp=2 x tp=2 (the GPT-2
// example's tensor-parallel plan), parameters reassembled from the slices;
// full_shard and shard_grad_op over dp_shard x cp (FSDP2's dp_shard_cp),
// weights from get_state_dict; save_state of ZeRO's consolidated state refused by name.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/data/data_loader.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/gpt2_one_process.h"
#include "support/gpt2_split.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr accel::testing::Gpt2Run kRun{.rows_per_step = 4, .rows_seed = 900, .model_seed = 17};
constexpr int64_t kRowsPerStep = kRun.rows_per_step, kSeq = kRun.seq;
constexpr double kMaxNorm = kRun.max_norm;

using Trace = accel::testing::Gpt2Trace;
torch::Tensor all_rows(int64_t vocab) { return accel::testing::token_rows(kRun, vocab); }
std::shared_ptr<torch::optim::AdamW> adamw(gpt2::GPT2& model) {
  return accel::testing::adamw(kRun, model->parameters());
}
Trace single_process() { return accel::testing::one_process(kRun); }

Trace through_accelerator(Accelerator& acc) {
  const DeviceMesh* mesh = acc.device_mesh();
  EXPECT_NE(mesh, nullptr);
  seed_cpu(17);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  const bool tp = mesh->config().tp_size > 1;
  if (tp) gpt2::parallelize_tensor(model, mesh->group("tp"));
  const auto rows = all_rows(model->options().vocab_size());
  const int64_t per_rank = kRowsPerStep / acc.data_parallel_size();
  auto data =
      make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"tokens", rows}}), DataLoaderOptions(per_rank));
  auto [prepared, opt, loader] = acc.prepare(model, adamw(model), data);
  const ContextParallel cp(*mesh);
  Trace t;
  for (auto& batch : loader) {
    const auto& tokens = batch["tokens"];
    EXPECT_EQ(tokens.size(0), per_rank);
    auto parts = context_parallel_shard(*mesh, {tokens.narrow(1, 0, kSeq), tokens.narrow(1, 1, kSeq)}, 1);
    EXPECT_EQ(parts[0].size(1), kSeq / 2);
    torch::Tensor loss;
    {
      ContextParallelScope scope(cp);
      loss = prepared(parts[0], parts[1]);
    }
    acc.backward(loss);
    t.norms.push_back(acc.clip_grad_norm_(model->parameters(), kMaxNorm).item<double>());
    opt->step();
    opt->zero_grad();
    // Each rank's loss is its part's: the mean over the cp ranks is its
    // replica's, the mean over the replicas the batch's.
    auto replica_loss = reduce(loss.detach(), ReduceOp::mean, mesh->group("cp"));
    t.losses.push_back(acc.gather_for_metrics(replica_loss).mean().item<double>());
  }
  if (prepared.core().sharding()) {
    // The whole weights as the Accelerator gives them (gathered from the
    // shards under FSDP, where the parameters themselves hold nothing).
    for (auto& [name, value] : acc.get_state_dict(prepared)) t.params[name] = value.detach().clone();
    return t;
  }
  for (const auto& p : model->named_parameters()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    t.params[p.key()] = !tp || dim < 0 ? p.value().detach().clone()
                                       : accel::testing::reassemble(p.value().detach(), dim, packed, mesh->group("tp"));
  }
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

}  // namespace

TEST(ContextParallelAccelerator, ContextTimesDataParallelGPT2EqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    ParallelismConfig c;
    c.dp_shard_size = 2;
    c.cp_size = 2;
    c.cp_comm_strategy = "alltoall";
    Accelerator acc(AcceleratorOptions().parallelism_config(c));
    EXPECT_EQ(acc.data_parallel_size(), 2);
    // Mesh order dp_shard, cp: ranks 0,1 are replica 0 and ranks 2,3 replica 1.
    EXPECT_EQ(acc.data_parallel_index(), acc.process_index() / 2);
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(ContextParallelAccelerator, ContextTimesTensorParallelGPT2EqualsOneProcess) {
  // cp=2 x tp=2: each rank holds half of the heads (tp) for half of every
  // sequence (cp); the ring runs between the two cp ranks of one tp slice,
  // DDP averages over "dp_cp" (those two ranks), clipping sums the slices.
  run_distributed(4, [] {
    const auto ref = single_process();
    ParallelismConfig c;
    c.cp_size = 2;
    c.tp_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(c));
    EXPECT_EQ(acc.data_parallel_size(), 1);
    expect_matches(ref, through_accelerator(acc));
  });
}

// FSDP2's layout with context parallel: each parameter sharded over
// dp_shard x cp (4 ranks hold a quarter each), the cp ranks of a replica
// reading the same batches; ZeRO-2 over dp x cp the same way.
TEST(ContextParallelAccelerator, ContextTimesFullShardGPT2EqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    ParallelismConfig c;
    c.dp_shard_size = 2;
    c.cp_size = 2;
    for (const auto strategy : {ShardingStrategy::full_shard, ShardingStrategy::shard_grad_op}) {
      Accelerator acc(AcceleratorOptions().parallelism_config(c).sharding(ShardingOptions().strategy(strategy)));
      EXPECT_EQ(acc.data_parallel_size(), 2);
      expect_matches(ref, through_accelerator(acc));
    }
  });
}

TEST(ContextParallelAccelerator, RefusesCheckpointsOfShardingWithContextParallel) {
  run_distributed(2, [] {
    ParallelismConfig c;
    c.cp_size = 2;
    // ZeRO's and full_shard's checkpoints are built (mesh_sharded_checkpoint_test.cpp);
    // ZeRO's consolidated state over a mesh not yet.
    Accelerator acc(AcceleratorOptions().parallelism_config(c).sharding(
        ShardingOptions().strategy(ShardingStrategy::shard_grad_op).consolidated_checkpoint(true)));
    const accel::testing::TempDir dir("cp_zero_refusal");
    accel::testing::expect_error([&] { acc.save_state(dir.path() / "state"); },
                                 {"save_state", "cp_size 2", "consolidated_checkpoint"});
  });
}
