// Trains a GPT-2 family model (model.h) with accel, the way a LibTorch user
// writes it: the same program runs on a CPU or a GPU, alone or under
// `accel launch --num_processes N`, in fp32 or bf16, chosen at launch
// (or with --mixed-precision). AdamW with decoupled weight decay on the
// matrices, a cosine schedule with linear warmup, gradient clipping.
//
//   ./build/examples/gpt2 --config tiny --seq 64 --batch 8 --steps 50 --data README.md
//   ./build/examples/gpt2 --config 124M --batch 8 --mixed-precision bf16 --timing
//   ./build/examples/gpt2 --from <hugging face gpt2 folder> --save out/   # fine-tune, save for transformers
//
//   ./build/examples/gpt2 --config 124M --batch 8 --mixed-precision bf16 --profile 3
//
// On a GPU the defaults are the fast path: the fused loss, and the step
// recorded as a CUDA graph where the setup allows it (--no-fused-loss and
// --no-cuda-graph turn them off).
//
// Two pipeline stages (with _TP_SIZE / _DP_*: 3D), in the environment
// PARALLELISM_CONFIG_PP_SIZE=2 ACCELERATE_USE_PARALLELISM_CONFIG=true:
//   ./build/accel launch --cpu --num_processes 2 ./build/examples/gpt2 --config tiny --batch 8 --microbatches 4
//
//   ./build/examples/gpt2 generate --model <folder> --prompt-tokens 464,2068 --max-new-tokens 20   # generate_cli.cpp
//
// --timing prints one machine-readable line at the end (bench/gpt2.sh reads it):
//   timing {"impl": "accel", "tokens_per_s": ..., "step_ms": ..., "peak_mem_mb": ..., ...}
// tokens/s and step ms are over the steps after --timing-skip warm-up steps;
// peak_mem_mb is the CUDA caching allocator's peak of allocated bytes
// (PyTorch's torch.cuda.max_memory_allocated), 0 on a CPU.
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#ifdef ACCEL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "accel/accel.h"
#include "accel/optim/fused_adamw.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/accelerated_step.h"
#include "accel/util/check.h"
#include "accel/util/kernel_profile.h"
#include "batches.h"
#include "generate_cli.h"
#include "hf_checkpoint.h"
#include "model.h"
#include "pipeline_parallel.h"
#include "tensor_parallel.h"

namespace {

struct Flags {
  std::string config = "124M";
  std::string from;  // a Hugging Face GPT-2 folder to start from
  std::string data = "random";
  std::string save;
  std::string mixed_precision;  // empty: from the launcher
  std::string optimizer = "adamw";
  int64_t batch = 8, seq = 1024, steps = 20, warmup = -1, timing_skip = 3, log_every = 1, profile = 0;
  double lr = 6e-4, weight_decay = 0.1, clip = 1.0, dropout = 0.0;
  uint64_t seed = 1337;
  bool timing = false;
  bool phase_timing = false;
  bool cuda_graph = false;     // --cuda-graph: capture, or fail saying why
  bool no_cuda_graph = false;  // neither: capture where the setup allows it
  bool fused_loss = true;
  bool master_weights = false;
  bool bf16_logits = false;
  std::string trace;
  std::string log_with;  // a tracker (tensorboard), recording every step
  std::string project_dir = ".";
  // ZeRO (the launcher's DeepSpeed/FSDP settings do the same without flags).
  int zero_stage = -1;  // -1: none
  std::string offload = "none";
  bool offload_params = false;
  bool activation_checkpointing = false;
  bool prefetch = false;
  int64_t n_layer = 0, n_embd = 0, n_head = 0;  // 0: the --config's
  std::string nvme_path;
  bool delayed_update = false;
  int64_t bucket_size = 500'000'000;
  // Pipeline parallel (pp_size > 1 from the launcher): micro-batches per step and their schedule.
  int64_t microbatches = 4;
  std::string pp_schedule = "1f1b";
};

Flags parse(int argc, char** argv) {
  Flags f;
  CLI::App app{"Train a GPT-2 family model with accel"};
  app.option_defaults()->always_capture_default();  // --help shows each default
  app.add_option("--config", f.config, "model shape: 124M, 350M or tiny (ignored with --from)")
      ->check(CLI::IsMember({"124M", "350M", "tiny"}));
  app.add_option("--from", f.from, "start from this Hugging Face GPT-2 folder (config.json + model.safetensors)");
  app.add_option("--data", f.data, "'random' tokens, or a text file whose bytes are the tokens");
  app.add_option("--batch", f.batch, "sequences per process per step")->check(CLI::PositiveNumber);
  app.add_option("--seq", f.seq, "tokens per sequence (at most the model's n_positions)")->check(CLI::PositiveNumber);
  app.add_option("--steps", f.steps, "optimizer steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", f.warmup, "learning-rate warmup steps (default: steps / 10)");
  app.add_option("--lr", f.lr, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", f.weight_decay, "AdamW weight decay of the weight matrices")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--clip", f.clip, "clip the gradient norm to this (0: no clipping)")->check(CLI::NonNegativeNumber);
  app.add_option("--dropout", f.dropout, "dropout probability")->check(CLI::Range(0.0, 0.99));
  app.add_option("--mixed-precision", f.mixed_precision, "no, fp16 or bf16 (default: what the launcher set)")
      ->check(CLI::IsMember({"no", "fp16", "bf16"}));
  app.add_option("--optimizer", f.optimizer,
                 "adamw: torch::optim::AdamW (prepared, it steps with ATen's fused kernel on CUDA); "
                 "fused: accel::FusedAdamW (the fused kernel on every device)")
      ->check(CLI::IsMember({"adamw", "fused"}));
  app.add_option("--seed", f.seed, "initial weights and data");
  app.add_option("--save", f.save, "save the trained model here in Hugging Face's layout");
  auto* graph_on = app.add_flag("--cuda-graph", f.cuda_graph,
                                "record the training step as a CUDA graph once and replay it, or fail saying why "
                                "(default: recorded where the setup allows it: one process on a GPU, no gradient "
                                "accumulation, no fp16, no ZeRO, context or pipeline parallel)");
  app.add_flag("--no-cuda-graph", f.no_cuda_graph, "run every step eagerly")->excludes(graph_on);
  app.add_flag(
      "--master-weights", f.master_weights,
      "keep the model in bf16/fp16 with fp32 master weights in the optimizer (AcceleratorOptions::master_weights)");
  app.add_flag("--bf16-logits", f.bf16_logits,
               "with the fused loss under bf16/fp16 on a GPU: the output layer writes its logits in the 16-bit type "
               "(as linear() under autocast, and transformers' GPT2LMHeadModel, round them), which the loss kernel "
               "reads and overwrites with the gradient: half its memory traffic (default: float32 logits)");
  app.add_flag("--fused-loss,!--no-fused-loss", f.fused_loss,
               "compute the loss with accel::linear_cross_entropy (no full logits; padded, chunked GEMMs); "
               "--no-fused-loss: full logits, then cross_entropy");
  app.add_option("--n-layer", f.n_layer, "blocks (overrides --config's)")->check(CLI::PositiveNumber);
  app.add_option("--n-embd", f.n_embd, "width (overrides --config's)")->check(CLI::PositiveNumber);
  app.add_option("--n-head", f.n_head, "attention heads (overrides --config's)")->check(CLI::PositiveNumber);
  app.add_option("--zero-stage", f.zero_stage,
                 "ZeRO stage 0, 1, 2 or 3 (3: full_shard, each GPT2Block a sharded unit; default: none, or the "
                 "launcher's)")
      ->check(CLI::Range(0, 3));
  app.add_option("--offload", f.offload, "with --zero-stage: optimizer offload none, cpu or nvme")
      ->check(CLI::IsMember({"none", "cpu", "nvme"}));
  app.add_flag("--offload-params", f.offload_params,
               "with --zero-stage 3: the parameter shards in host memory too (DeepSpeed offload_param cpu, FSDP's "
               "CPU offload); implies --offload cpu unless --offload nvme");
  app.add_flag("--prefetch", f.prefetch,
               "with --zero-stage 3: gather the next block ahead, in forward and in backward (FSDP's forward_prefetch "
               "and BACKWARD_PRE)");
  app.add_flag("--activation-checkpointing", f.activation_checkpointing,
               "with --zero-stage 3: recompute each GPT2Block's forward in backward (FSDP_ACTIVATION_CHECKPOINTING)");
  app.add_option("--nvme-path", f.nvme_path, "with --offload nvme: folder of the optimizer state pages");
  app.add_flag("--delayed-update", f.delayed_update,
               "with --offload: ZeRO-Offload's one-step delayed parameter update (the CPU update overlaps the next "
               "forward/backward)");
  app.add_option("--microbatches", f.microbatches,
                 "under pipeline parallel (PARALLELISM_CONFIG_PP_SIZE > 1): micro-batches per step (must divide "
                 "--batch)")
      ->check(CLI::PositiveNumber);
  app.add_option("--pp-schedule", f.pp_schedule, "under pipeline parallel: 1f1b or gpipe")
      ->check(CLI::IsMember({"1f1b", "gpipe"}));
  app.add_option("--bucket-size", f.bucket_size, "with --zero-stage 2: elements per gradient bucket")
      ->check(CLI::PositiveNumber);
  app.add_option("--log_with", f.log_with, "record the run with this tracker (tensorboard) under --project_dir/gpt2");
  app.add_option("--project_dir", f.project_dir, "where --log_with writes");
  app.add_flag("--timing", f.timing, "print a machine-readable timing line at the end");
  app.add_flag("--phase-timing", f.phase_timing,
               "wait for the device after forward+backward, clipping and the optimizer step, and report each "
               "phase's mean time (not with --cuda-graph)");
  app.add_option("--profile", f.profile, "after training, profile this many more steps and print the top kernels")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--trace", f.trace, "with --profile: write a Chrome trace here");
  app.add_option("--timing-skip", f.timing_skip, "warm-up steps left out of the timing")->check(CLI::NonNegativeNumber);
  app.add_option("--log-every", f.log_every, "print the loss every N steps")->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  if (f.warmup < 0) f.warmup = f.steps / 10;
  ACCEL_CHECK_ARG(!f.offload_params || f.zero_stage == 3, "--offload-params needs --zero-stage 3 (got ", f.zero_stage,
                  ")");
  if (f.offload_params && f.offload == "none") f.offload = "cpu";
  ACCEL_CHECK_ARG(!f.prefetch || f.zero_stage == 3, "--prefetch needs --zero-stage 3, got ", f.zero_stage);
  ACCEL_CHECK_ARG(!f.activation_checkpointing || f.zero_stage == 3,
                  "--activation-checkpointing needs --zero-stage 3 (the sharded blocks recompute), got ", f.zero_stage);
  ACCEL_CHECK_ARG(!f.bf16_logits || f.fused_loss,
                  "--bf16-logits with --no-fused-loss: the 16-bit logits are the fused loss's; expected one of them");
  ACCEL_CHECK_ARG(!(f.phase_timing && f.cuda_graph), "--phase-timing with --cuda-graph: a replayed step has no phases");
  ACCEL_CHECK_ARG(f.timing_skip < f.steps, "--timing-skip ", f.timing_skip, " leaves no timed step out of --steps ",
                  f.steps, ": expected fewer warm-up steps than steps");
  return f;
}

// AdamW's usual grouping for transformers: decay the weight matrices and
// embeddings, not the biases and LayerNorm gains (decaying those towards 0
// only hurts). A group's options replace the defaults, so each is a copy
// of `options` with its own weight decay.
std::vector<torch::optim::OptimizerParamGroup> param_groups(torch::nn::Module& net,
                                                            const torch::optim::AdamWOptions& options) {
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : net.parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(options));
  auto without = std::make_unique<torch::optim::AdamWOptions>(options);
  without->weight_decay(0.0);
  groups.emplace_back(no_decay, std::move(without));
  return groups;
}

// A line of /proc/self/status ("VmHWM", "RssFile"), kB as GiB.
double host_status_gib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  const std::string prefix = field + ":";
  for (std::string line; std::getline(status, line);)
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(prefix.size())) / (1024.0 * 1024.0);
  return 0.0;
}

double peak_memory_mb(torch::Device device) {
#ifdef ACCEL_WITH_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    return static_cast<double>(
               stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1024.0 * 1024.0);
  }
#endif
  return 0.0;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 1 && std::string(argv[1]) == "generate") return gpt2::generate_main(argc - 1, argv + 1);
  const Flags flags = parse(argc, argv);
  accel::AcceleratorOptions options;
  if (!flags.mixed_precision.empty()) options.mixed_precision(flags.mixed_precision);
  options.cuda_graph(flags.cuda_graph).master_weights(flags.master_weights);
  if (!flags.log_with.empty())
    options.log_with({flags.log_with}).project_config(accel::ProjectConfiguration().project_dir(flags.project_dir));
  if (flags.zero_stage >= 0) {
    const accel::ShardingStrategy stages[] = {
        accel::ShardingStrategy::no_shard, accel::ShardingStrategy::shard_optimizer,
        accel::ShardingStrategy::shard_grad_op, accel::ShardingStrategy::full_shard};
    options.sharding(
        accel::ShardingOptions()
            .strategy(stages[flags.zero_stage])
            .reduce_bucket_size(flags.bucket_size)
            .transformer_cls_to_wrap({"GPT2Block"})
            .activation_checkpointing(flags.activation_checkpointing)
            .forward_prefetch(flags.prefetch)
            .backward_prefetch(flags.prefetch ? accel::BackwardPrefetch::backward_pre : accel::BackwardPrefetch::none)
            .offload_optimizer(accel::OffloadOptions()
                                   .device(accel::parse_offload_device(flags.offload))
                                   .nvme_path(flags.nvme_path)
                                   .delayed_update(flags.delayed_update))
            .offload_param(accel::OffloadOptions().device(flags.offload_params ? accel::OffloadDevice::cpu
                                                                               : accel::OffloadDevice::none)));
  }
  accel::Accelerator accelerator(options);

  torch::manual_seed(flags.seed);
  auto shape_options = gpt2::named_config(flags.config).dropout(flags.dropout);
  if (flags.n_layer > 0) shape_options.n_layer(flags.n_layer);
  if (flags.n_embd > 0) shape_options.n_embd(flags.n_embd);
  if (flags.n_head > 0) shape_options.n_head(flags.n_head);
  gpt2::GPT2 net = flags.from.empty() ? gpt2::GPT2(shape_options) : gpt2::from_pretrained(flags.from, flags.dropout);
  net->loss_options.float32_logits(!flags.bf16_logits);
  const auto& shape = net->options();
  // A parallelism_config with tp_size > 1 (in code, or Accelerate's
  // PARALLELISM_CONFIG_TP_SIZE) splits the model over the mesh's tp ranks;
  // the ranks of one replica then read the same batches.
  const auto* mesh = accelerator.device_mesh();
  const int tp = mesh ? mesh->config().tp_size : 1;
  if (tp > 1) gpt2::parallelize_tensor(net, mesh->group("tp"));
  // cp_size > 1 (PARALLELISM_CONFIG_CP_SIZE): each rank of a replica trains on
  // its part of every sequence, attention running across them (the model's
  // seams, inside the scope in micro_step).
  const accel::ContextParallel cp = mesh ? accel::ContextParallel(*mesh) : accel::ContextParallel(nullptr);
  ACCEL_CHECK_ARG(cp.size() == 1 || !flags.cuda_graph, "--cuda-graph with context parallel (cp_size ", cp.size(),
                  ") is not supported: the ring's transfers are not captured; expected one of them");
  ACCEL_CHECK_ARG(cp.size() == 1 || flags.seq % (2 * cp.size()) == 0, "--seq ", flags.seq,
                  " does not divide by 2 * cp_size = ", 2 * cp.size(),
                  " (each context-parallel rank takes two equal chunks of every sequence)");
  // pp_size > 1 (PARALLELISM_CONFIG_PP_SIZE): each rank trains one stage, a
  // run of blocks (the first also the embeddings, the last the head); the
  // micro-batches of each step pass through the stages (micro_step).
  const int pp = mesh ? mesh->config().pp_size : 1;
  ACCEL_CHECK_ARG(pp == 1 || (cp.size() == 1 && !flags.cuda_graph && flags.save.empty()), "pp_size ", pp, " with",
                  cp.size() > 1 ? " cp_size " + std::to_string(cp.size()) : "", flags.cuda_graph ? " --cuda-graph" : "",
                  flags.save.empty() ? "" : " --save",
                  " is not supported by this example; expected pipeline parallel with tp and dp only");
  ACCEL_CHECK_ARG(pp == 1 || flags.batch % flags.microbatches == 0, "--batch ", flags.batch,
                  " does not divide into --microbatches ", flags.microbatches, " (pp_size ", pp, ")");
  std::optional<accel::StageModule> stage;
  if (pp > 1) stage = accel::StageModule(*net, gpt2::pipeline_stage(net, mesh->group("pp")));
  torch::nn::Module& trained = stage ? static_cast<torch::nn::Module&>(**stage) : *net;
  ACCEL_CHECK_ARG(flags.seq <= shape.n_positions(), "--seq ", flags.seq, " is longer than the model's n_positions ",
                  shape.n_positions());
  auto batches = flags.data == "random"
                     ? gpt2::TokenBatches::random(shape.vocab_size(), flags.seed + accelerator.data_parallel_index())
                     : gpt2::TokenBatches::from_text(flags.data, flags.seed + accelerator.data_parallel_index());
  ACCEL_CHECK_ARG(batches.vocab_needed() <= shape.vocab_size(), "--data ", flags.data, " has ", batches.vocab_needed(),
                  " token values, more than the model's vocab_size ", shape.vocab_size());

  auto adamw_options =
      torch::optim::AdamWOptions(flags.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(flags.weight_decay);
  std::shared_ptr<torch::optim::AdamW> adamw;
  if (flags.optimizer == "fused") {
    adamw = std::make_shared<accel::FusedAdamW>(param_groups(trained, adamw_options), adamw_options);
  } else {
    adamw = std::make_shared<torch::optim::AdamW>(param_groups(trained, adamw_options), adamw_options);
  }
  // A prepared scheduler steps once per data-parallel rank per optimizer
  // step (Accelerate's rule), so the schedule is counted in those steps.
  const int64_t n = accelerator.data_parallel_size();
  auto schedule = accel::get_scheduler("cosine", *adamw, flags.warmup * n, flags.steps * n);
  // Under pp the stage is the model this rank trains.
  std::optional<accel::PreparedModel<gpt2::GPT2>> model;
  std::optional<accel::PreparedModel<accel::StageModule>> staged;
  if (stage) {
    staged = accelerator.prepare(*stage);
  } else {
    model = accelerator.prepare(net);
  }
  auto [optimizer, scheduler] = accelerator.prepare(adamw, schedule);

  const int64_t accumulation = accelerator.gradient_accumulation_steps();
  const int64_t tokens_per_step = flags.batch * flags.seq * accumulation * n;
  accel::print(
      "gpt2: ", net->num_parameters() / 1e6, "M parameters (", shape.n_layer(), " layers, ", shape.n_head(), " heads, ",
      shape.n_embd(), " wide), ", accelerator.num_processes(), " process(es) on ", accelerator.device(),
      ", mixed precision ", accel::to_string(accelerator.mixed_precision()), ", ", tokens_per_step, " tokens per step",
      model && model->core().sharding() ? ", parameters sharded across " + std::to_string(n) + " processes" : "",
      tp > 1 ? ", tensor parallel over " + std::to_string(tp) + " processes (parameters counted per rank)" : "",
      cp.size() > 1 ? ", context parallel over " + std::to_string(cp.size()) + " processes (" +
                          accel::to_string(cp.strategy()) + ")"
                    : "",
      pp > 1 ? ", pipeline parallel over " + std::to_string(pp) + " stages (" + flags.pp_schedule + ", " +
                   std::to_string(flags.microbatches) + " micro-batches; parameters counted per stage)"
             : "");

  // One batch: forward, loss, backward, clipping, optimizer step. With
  // --cuda-graph it is recorded once and replayed (the same code runs
  // eagerly otherwise); under gradient accumulation it runs per micro-batch
  // inside accumulate().
  // --phase-timing: milliseconds of forward+backward, clipping, optimizer step (summed over timed steps).
  std::array<double, 3> phase_ms{0, 0, 0};
  bool timing_phases = false;  // set for the timed steps
  auto phase_clock = std::chrono::steady_clock::now();
  // Ends phase `phase` (-1: starts the first) when --phase-timing is on.
  auto end_phase = [&](int phase) {
    if (!flags.phase_timing) return;
    if (accelerator.device().is_cuda()) torch::cuda::synchronize();
    const auto now = std::chrono::steady_clock::now();
    if (timing_phases && phase >= 0)
      phase_ms[static_cast<size_t>(phase)] += std::chrono::duration<double, std::milli>(now - phase_clock).count();
    phase_clock = now;
  };
  auto micro_step = [&](const std::vector<torch::Tensor>& batch) {
    end_phase(-1);
    torch::Tensor loss;
    if (staged) {
      // Forward and backward of every micro-batch, through the stages.
      loss = accel::pipeline_step(accelerator, *staged, accel::pipeline_schedule_kind(flags.pp_schedule),
                                  flags.microbatches, batch[0], batch[1]);
    } else {
      const auto in = cp.shard(batch, /*seq_dim=*/1);  // this rank's positions (all of them without cp)
      accel::ContextParallelScope scope(cp);
      if (flags.fused_loss) {
        loss = (*model)(in[0], in[1]);
      } else {
        auto logits = (*model)(in[0]);
        loss = torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), in[1].reshape(-1));
      }
      accelerator.backward(loss);
    }
    end_phase(0);
    if (accelerator.sync_gradients() && flags.clip > 0) {
      if (staged) {
        accel::clip_pipeline_grad_norm_(accelerator, *staged, flags.clip);  // the norm over every stage
      } else {
        accelerator.clip_grad_norm_(net->parameters(), flags.clip);
      }
    }
    end_phase(1);
    optimizer->step();
    optimizer->zero_grad();
    end_phase(2);
    // Under cp each rank's loss is its part's; the parts are equal, so their mean is the sequences'.
    if (cp.size() > 1)
      return std::vector<torch::Tensor>{accel::reduce(loss.detach(), accel::ReduceOp::mean, cp.group())};
    return std::vector<torch::Tensor>{loss.detach()};
  };
  // Neither --cuda-graph nor --no-cuda-graph: the step (graph-safe: nothing
  // in it reads a value on the host) is recorded where the setup allows it.
  const bool sharded = model && model->core().sharding();
  const bool cuda_graph = flags.cuda_graph || (!flags.no_cuda_graph && accelerator.can_capture_step() && !sharded &&
                                               cp.size() == 1 && !staged && !flags.phase_timing);
  const auto capture_options = accel::CaptureOptions().cuda_graph(cuda_graph);
  auto captured = accelerator.capture_step(micro_step, capture_options);
  if (cuda_graph && accelerator.device().is_cuda())
    accel::print("gpt2: the step is recorded as a CUDA graph after ", capture_options.warmup_steps(),
                 " eager steps (--no-cuda-graph: every step eager)");
  auto train_step = [&]() {
    torch::Tensor loss;
    if (accumulation == 1) {
      auto batch = batches.next(flags.batch, flags.seq, accelerator.device());
      loss = captured({batch.inputs, batch.targets})[0];
      scheduler->step();
    } else {
      for (int64_t micro = 0; micro < accumulation; ++micro) {
        auto scope = staged ? accelerator.accumulate(*staged) : accelerator.accumulate(*model);
        auto batch = batches.next(flags.batch, flags.seq, accelerator.device());
        loss = micro_step({batch.inputs, batch.targets})[0];
        scheduler->step();
      }
    }
    return loss.item<double>();  // waits for the step, as any logging loop does
  };

  accelerator.init_trackers("gpt2", {{"config", flags.config},
                                     {"batch", flags.batch},
                                     {"seq", flags.seq},
                                     {"lr", flags.lr},
                                     {"processes", n},
                                     {"mixed_precision", accel::to_string(accelerator.mixed_precision())}});
  const bool cuda = accelerator.device().is_cuda();
  double timed_ms = 0, update_ms = 0;
  for (int64_t step = 0; step < flags.steps; ++step) {
    if (cuda) torch::cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    timing_phases = step >= flags.timing_skip;
    const double loss_value = train_step();
    // Inside the timed part: what recording every step costs shows in the timing.
    accelerator.log({{"loss", loss_value}, {"lr", scheduler->get_last_lr()[0]}}, step + 1);
    if (cuda) torch::cuda::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (step >= flags.timing_skip) timed_ms += ms;
    // ZeRO-Offload: how long the host's optimizer update took (overlapped or not).
    if (step >= flags.timing_skip) update_ms += optimizer->last_update_ms();
    if (step % flags.log_every == 0 || step + 1 == flags.steps) {
      accel::print("step ", step + 1, "/", flags.steps, "  loss ", loss_value, "  lr ", scheduler->get_last_lr()[0],
                   "  ", ms, " ms  ", static_cast<double>(tokens_per_step) / ms * 1e3, " tokens/s");
    }
  }

  const double step_ms = timed_ms / static_cast<double>(flags.steps - flags.timing_skip);
  const double tokens_per_s = static_cast<double>(tokens_per_step) / step_ms * 1e3;
  accel::print("mean over ", flags.steps - flags.timing_skip, " steps: ", step_ms, " ms/step, ", tokens_per_s,
               " tokens/s, peak memory ", peak_memory_mb(accelerator.device()), " MB");
  if (flags.timing && accelerator.is_main_process()) {
    const nlohmann::json line = {
        {"impl", "accel"},
        {"optimizer", flags.optimizer},
        {"cuda_graph", cuda_graph},
        {"fused_loss", flags.fused_loss},
        {"master_weights", flags.master_weights},
        {"bf16_logits", flags.bf16_logits},
        {"config", flags.from.empty() ? flags.config : flags.from},
        {"n_layer", shape.n_layer()},  // the --config's shape unless --n-layer/--n-embd/--n-head changed it
        {"n_embd", shape.n_embd()},
        {"batch", flags.batch},
        {"seq", flags.seq},
        {"processes", n},
        {"mixed_precision", accel::to_string(accelerator.mixed_precision())},
        {"timed_steps", flags.steps - flags.timing_skip},
        {"tokens_per_s", tokens_per_s},
        {"step_ms", step_ms},
        {"peak_mem_mb", peak_memory_mb(accelerator.device())},
        {"zero_stage", flags.zero_stage},
        {"offload", flags.offload + (flags.delayed_update ? "+delayed" : "") + (flags.offload_params ? "+params" : "")},
        {"params", net->num_parameters()},
        {"activation_checkpointing", flags.activation_checkpointing},
        {"prefetch", flags.prefetch},
        {"host_rss_gb", host_status_gib("VmHWM")},  // the peak
        // Of the resident memory now, pages of mapped files (--offload nvme
        // under stage 3: the moments the kernel keeps cached).
        {"host_file_rss_gb", host_status_gib("RssFile")},
        {"host_update_ms", update_ms / static_cast<double>(flags.steps - flags.timing_skip)},
        {"phase_ms",
         {{"forward_backward", phase_ms[0] / static_cast<double>(flags.steps - flags.timing_skip)},
          {"clip", phase_ms[1] / static_cast<double>(flags.steps - flags.timing_skip)},
          {"optimizer", phase_ms[2] / static_cast<double>(flags.steps - flags.timing_skip)}}},
    };
    std::cout << "timing " << line.dump() << std::endl;
  }

  if (flags.profile > 0) {
    accel::KernelProfile profile;
    for (int64_t i = 0; i < flags.profile; ++i) train_step();
    auto summary = profile.stop(flags.trace.empty() ? std::nullopt : std::optional<std::string>(flags.trace));
    if (accelerator.is_main_process())
      std::cout << "profile of " << flags.profile << " steps:\n" << summary.table(30) << std::flush;
  }

  if (!flags.save.empty()) {
    // Every process takes part: sharded parameters are gathered unit by unit.
    const auto state = accelerator.get_state_dict(*model);
    if (accelerator.is_main_process()) gpt2::save_pretrained(*net, state, flags.save);
    accelerator.wait_for_everyone();
    accel::print("saved to ", flags.save);
  }
  accelerator.end_training();
  return 0;
} catch (const std::exception& e) {
  std::cerr << "gpt2: " << accel::error_message(e) << std::endl;
  return 1;
}
