// What each model-parallel dimension costs against data parallelism on the
// same ranks (issue 25): the GPT-2 example's model trained by a mesh of
// dp x cp x tp x pp ranks (accel/parallel/mesh), the same global batch and
// steps for every layout, AdamW with clipping at 1.0 (the true global norm).
// Prints one line "parallel {json}" from rank 0 with the layout, global
// tokens/s, step ms and, per rank, the bytes of training state it holds
// (parameters, gradients, AdamW moments) and its peak resident memory.
//
//   accel launch --cpu --num_processes 4 build/bench/bench_parallel --dp 2 --tp 2
//   accel launch --cpu --num_processes 4 build/bench/bench_parallel --pp 4 --microbatches 8
//   accel launch --cpu --num_processes 2 build/bench/bench_parallel --cp 2 --cp-strategy alltoall
//     [--layers 4 --width 256 --heads 8 --vocab 8192 --seq 256 --batch 8 --steps 8 --timing-skip 3] [--gpu 1]
//
// On the CPU over Gloo by default; --gpu 1 runs each rank on its GPU over
// NCCL (launched with one process per GPU), the same layouts unchanged.
//
// The whole batch of --batch sequences is cut over the dp replicas; a
// pipeline runs each replica's part as --microbatches micro-batches (1F1B);
// context parallel gives each cp rank its part of every sequence (the
// load-balanced split) and averages gradients over dp x cp.
// Data-parallel gradients are averaged in one flat all-reduce per step (as
// DDP's buckets do, without its overlap with backward, for every layout
// alike); bench/parallel.sh runs the layouts one after the other.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/accel.h"
#include "accel/optim/grad_norm.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/clip.h"
#include "accel/parallel/pipeline/runner.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/config.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"

namespace {

using Clock = std::chrono::steady_clock;

double peak_rss_gib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1024.0 * 1024.0);
  return 0.0;
}

// Averages the gradients of `params` over `group` in one all-reduce of a
// flat buffer (what DDP's buckets amount to when they are issued together).
void average_gradients(const std::vector<torch::Tensor>& params, const accel::ProcessGroupPtr& group) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad().reshape(-1));
  auto flat = torch::cat(grads);
  accel::all_reduce_(flat, accel::ReduceOp::mean, group);
  int64_t offset = 0;
  for (auto& g : grads) {
    g.copy_(flat.narrow(0, offset, g.numel()));
    offset += g.numel();
  }
}

int64_t bytes_of(const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

}  // namespace

int main(int argc, char** argv) try {
  std::string cp_strategy = "allgather";
  std::map<std::string, int64_t> o = {{"--cp", 1},           {"--dp", 1},     {"--tp", 1},      {"--pp", 1},
                                      {"--microbatches", 4}, {"--layers", 4}, {"--width", 256}, {"--heads", 8},
                                      {"--vocab", 8192},     {"--seq", 256},  {"--batch", 8},   {"--steps", 8},
                                      {"--timing-skip", 3},  {"--gpu", 0}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cp-strategy" && i + 1 < argc) {
      cp_strategy = argv[++i];
      continue;
    }
    if (!o.count(a) || i + 1 == argc) throw std::invalid_argument("unknown or incomplete flag '" + a + "'");
    o[a] = std::stoll(argv[++i]);
  }
  const int64_t dp = o["--dp"], cp = o["--cp"], tp = o["--tp"], pp = o["--pp"], steps = o["--steps"],
                skip = o["--timing-skip"];
  const int64_t batch = o["--batch"], seq = o["--seq"];
  if (skip < 1 || skip >= steps) throw std::invalid_argument("--timing-skip must be in [1, --steps)");
  if (batch % dp != 0)
    throw std::invalid_argument("--batch " + std::to_string(batch) + " does not divide over --dp " +
                                std::to_string(dp));
  const int64_t rows = batch / dp;
  if (cp > 1 && pp > 1) throw std::invalid_argument("--cp with --pp: this benchmark composes cp with dp and tp only");
  const int64_t microbatches = pp > 1 ? o["--microbatches"] : 1;

  // On the CPU (Gloo) unless --gpu: even where a GPU exists.
  auto& state = accel::ProcessState::init(accel::StateOptions().cpu(o["--gpu"] == 0));
  const auto device = state.device();
  const auto settle = [&] {  // the device's queued work done, then every rank here
    if (device.is_cuda()) torch::cuda::synchronize();
    accel::wait_for_everyone();
  };
  accel::ParallelismConfig config;
  // The data-parallel ranks as dp_shard (Accelerate refuses tp/cp beside
  // pure dp_replicate); nothing is sharded here, gradients are averaged.
  config.dp_shard_size = static_cast<int>(dp);
  config.tp_size = static_cast<int>(tp);
  config.pp_size = static_cast<int>(pp);
  config.cp_size = static_cast<int>(cp);
  config.cp_comm_strategy = cp_strategy;
  accel::DeviceMesh mesh(state, config);  // throws naming the sizes when dp*tp*pp is not the world size
  const auto group_of = [&](const char* dim, int64_t size) {
    return size > 1 ? mesh.group(dim) : accel::ProcessGroupPtr{};
  };
  // Gradients are averaged over every rank that holds the same parameters
  // and saw different tokens: the dp replicas, and with cp the cp ranks too.
  const auto dp_group = cp > 1 ? mesh.group("dp_cp") : group_of("dp", dp), tp_group = group_of("tp", tp),
             pp_group = group_of("pp", pp);
  const int64_t replica = dp > 1 ? mesh.coordinate("dp") : 0;

  torch::manual_seed(0);  // the same model on every rank, then split
  gpt2::GPT2 model(gpt2::GPT2Options()
                       .n_layer(o["--layers"])
                       .n_embd(o["--width"])
                       .n_head(o["--heads"])
                       .vocab_size(o["--vocab"])
                       .n_positions(seq));
  model->to(device);
  if (tp_group) gpt2::parallelize_tensor(model, tp_group);
  std::optional<accel::PipelineStage> stage;
  if (pp_group) stage.emplace(gpt2::pipeline_stage(model, pp_group));
  const auto params = stage ? stage->parameters : model->parameters();
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(3e-4).weight_decay(0.1));
  const accel::ContextParallel context(mesh);  // off without a cp dimension

  Clock::time_point first;
  double last_loss = 0;
  for (int64_t step = 0; step < steps; ++step) {
    auto g = at::detail::createCPUGenerator(1000 + step);
    const auto tokens = torch::randint(0, o["--vocab"], {batch, seq + 1}, g).narrow(0, replica * rows, rows).to(device);
    const auto parts = context.shard({tokens.narrow(1, 0, seq), tokens.narrow(1, 1, seq)}, /*seq_dim=*/1);
    const auto inputs = parts[0].contiguous(), targets = parts[1].contiguous();
    optimizer.zero_grad();
    torch::Tensor loss;
    if (stage) {
      loss = accel::run_pipeline(
          *stage, accel::PipelineScheduleKind::one_f_one_b, microbatches,
          stage->is_first() ? accel::split_microbatches(inputs, microbatches) : std::vector<torch::Tensor>{},
          stage->is_last() ? accel::split_microbatches(targets, microbatches) : std::vector<torch::Tensor>{});
    } else {
      const accel::ContextParallelScope scope(context);
      loss = model(inputs, targets);
      loss.backward();
    }
    if (dp_group) average_gradients(params, dp_group);
    if (stage) {
      accel::sum_tied_gradients(*stage);
      auto grads = accel::stage_gradients(*stage);
      accel::clip_grad_norm_across_stages(grads, pp_group, 1.0);
    } else {
      auto grads = accel::tensor_parallel_gradients(params);
      accel::clip_grad_norm_(grads, 1.0);
    }
    optimizer.step();
    last_loss = loss.item<double>();
    if (step + 1 == skip) {
      settle();
      first = Clock::now();
    }
  }
  settle();
  const double step_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - first).count() / static_cast<double>(steps - skip);

  int64_t state_bytes = 0;
  for (const auto& p : params) state_bytes += bytes_of(p) + bytes_of(p.grad());
  for (const auto& [key, s] : optimizer.state()) {
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*s);
    state_bytes += bytes_of(adam.exp_avg()) + bytes_of(adam.exp_avg_sq());
  }
  const nlohmann::json mine = {
      {"rank", state.rank()}, {"state_mb", static_cast<double>(state_bytes) / 1e6}, {"peak_rss_gib", peak_rss_gib()}};
  const auto ranks = accel::gather_object(mine.dump());
  if (state.is_main_process()) {
    nlohmann::json per_rank = nlohmann::json::array();
    for (const auto& r : ranks) per_rank.push_back(nlohmann::json::parse(r));
    const nlohmann::json line = {{"dp", dp},
                                 {"cp", cp},
                                 {"cp_strategy", cp > 1 ? cp_strategy : ""},
                                 {"tp", tp},
                                 {"pp", pp},
                                 {"microbatches", microbatches},
                                 {"world", state.world_size()},
                                 {"device", device.str()},
                                 {"batch", batch},
                                 {"seq", seq},
                                 {"timed_steps", steps - skip},
                                 {"step_ms", step_ms},
                                 {"tokens_per_s", 1000.0 * static_cast<double>(batch * seq) / step_ms},
                                 {"last_loss", last_loss},
                                 {"ranks", per_rank}};
    std::printf("parallel %s\n", line.dump().c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_parallel: error: %s\n", e.what());
  return 1;
}
