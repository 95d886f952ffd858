// accel::Trainer's overhead over a hand-written accel loop, on the same
// GPT-2 run (bench/trainer.sh runs both and transformers' Trainer): the
// GPT-2 example's model, random tokens, the same batches, AdamW with
// Transformers' decay groups, clipping at 1.0, a linear schedule, one
// process. Prints one line "timing {json}" with the mean step time after
// the first --timing-skip steps. --compile is the Trainer's torch_compile
// (the step captured as a CUDA graph and replayed) and, for the loop, the
// same capture written by hand with Accelerator::capture_step.
//
//   bench_trainer --mode trainer|loop --config 124M --seq 1024 --batch 8 --steps 30 --timing-skip 10 [--bf16]
//                 [--compile]
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>

#include <torch/torch.h>

#include "accel/accel.h"
#include "gpt2/config.h"
#include "gpt2/model.h"

namespace {

using Clock = std::chrono::steady_clock;

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// Records when steps `skip` and `steps` end (after the device finished them).
struct StepClock : accel::TrainerCallback {
  int64_t skip, steps;
  torch::Device device;
  Clock::time_point first, last;
  StepClock(int64_t s, int64_t n, torch::Device d) : skip(s), steps(n), device(d) {}
  void on_step_end(const Args&, accel::TrainerState& state, accel::TrainerControl&) override {
    if (state.global_step != skip && state.global_step != steps) return;
    sync(device);
    (state.global_step == skip ? first : last) = Clock::now();
  }
};

}  // namespace

int main(int argc, char** argv) try {
  std::map<std::string, std::string> o = {{"--mode", "trainer"}, {"--config", "tiny"}, {"--seq", "64"},
                                          {"--batch", "4"},      {"--steps", "6"},     {"--timing-skip", "2"}};
  bool bf16 = false, compile = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--bf16") {
      bf16 = true;
    } else if (a == "--compile") {
      compile = true;
    } else if (o.count(a) && i + 1 < argc) {
      o[a] = argv[++i];
    } else {
      throw std::invalid_argument("unknown or incomplete flag '" + a + "'");
    }
  }
  const std::string mode = o["--mode"];
  if (mode != "trainer" && mode != "loop")
    throw std::invalid_argument("--mode '" + mode + "', expected trainer or loop");
  const int64_t seq = std::stoll(o["--seq"]), batch = std::stoll(o["--batch"]), steps = std::stoll(o["--steps"]),
                skip = std::stoll(o["--timing-skip"]);
  if (skip < 1 || skip >= steps) throw std::invalid_argument("--timing-skip must be in [1, --steps)");

  torch::manual_seed(0);
  auto options = gpt2::named_config(o["--config"]);
  options.n_positions(std::max(options.n_positions(), seq));
  gpt2::GPT2 model(options);
  const auto tokens = torch::randint(0, options.vocab_size(), {steps * batch, seq + 1}, torch::kLong);
  auto rows = std::make_shared<accel::LambdaDataset<accel::TensorDict>>(steps * batch, [tokens, seq](int64_t i) {
    return accel::TensorDict{{"input_ids", tokens[i].narrow(0, 0, seq)}, {"labels", tokens[i].narrow(0, 1, seq)}};
  });
  const auto args = accel::TrainingArguments()
                        .output_dir("bench_trainer_out")
                        .per_device_train_batch_size(batch)
                        .max_steps(steps)
                        .learning_rate(3e-4)
                        .weight_decay(0.1)
                        .save_strategy(accel::IntervalStrategy::no)
                        .logging_steps(steps)
                        .disable_tqdm(true)
                        .bf16(bf16)
                        .torch_compile(compile);

  double step_ms = 0;
  std::string device;
  if (mode == "trainer") {
    using Functions = accel::ModelFunctions<gpt2::GPT2>;
    auto functions = Functions().compute_loss(
        [](Functions::Model& m, const accel::TensorDict& b) { return m(b.at("input_ids"), b.at("labels")); });
    accel::Trainer trainer(model, args, rows, nullptr, functions);
    auto clock = std::make_shared<StepClock>(skip, steps, trainer.accelerator().device());
    trainer.add_callback(clock);
    trainer.train();
    step_ms = std::chrono::duration<double, std::milli>(clock->last - clock->first).count() / (steps - skip);
    device = trainer.accelerator().device().str();
  } else {
    // What a user writes with the Accelerator: the same optimizer groups,
    // schedule, clipping and batches as the Trainer's.
    accel::Accelerator accelerator(accel::AcceleratorOptions()
                                       .mixed_precision(bf16 ? accel::MixedPrecision::bf16 : accel::MixedPrecision::no)
                                       .fused_optimizer_step(true)
                                       .cuda_graph(compile));
    auto prepared = accelerator.prepare_model(model);
    const auto decay_names = accel::decay_parameter_names(*model);
    const std::set<std::string> decay(decay_names.begin(), decay_names.end());
    std::vector<torch::Tensor> with, without;
    for (const auto& p : model->named_parameters()) (decay.count(p.key()) ? with : without).push_back(p.value());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(with, std::make_unique<torch::optim::AdamWOptions>(
                                  torch::optim::AdamWOptions(args.learning_rate()).weight_decay(0.1)));
    groups.emplace_back(without, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(args.learning_rate()).weight_decay(0.0)));
    auto optimizer = accelerator.prepare_optimizer(
        std::make_shared<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(args.learning_rate())));
    auto scheduler = accel::get_scheduler(accel::parse_scheduler_type("linear"), optimizer->optimizer(), 0, steps);
    auto loader = accelerator.prepare_data_loader(
        accel::make_data_loader(rows, accel::DataLoaderOptions(batch).shuffle(true).seed(42)));
    const auto params = model->parameters();
    Clock::time_point first;
    int64_t step = 0;
    const auto step_fn = [&](const std::vector<torch::Tensor>& in) {
      auto loss = prepared(in[0], in[1]);
      accelerator.backward(loss);
      auto norm = accelerator.clip_grad_norm_(params, 1.0);
      optimizer->step();
      optimizer->zero_grad();
      return std::vector<torch::Tensor>{loss.detach(), norm.detach()};
    };
    std::optional<accel::CapturedStep> captured;
    for (auto& b : loader) {
      const std::vector<torch::Tensor> in{b.at("input_ids"), b.at("labels")};
      if (compile) {
        if (!captured) captured.emplace(accelerator.capture_step(step_fn));
        (*captured)(in);
      } else {
        step_fn(in);
      }
      scheduler->step();
      if (++step == skip) {
        sync(accelerator.device());
        first = Clock::now();
      }
    }
    sync(accelerator.device());
    step_ms = std::chrono::duration<double, std::milli>(Clock::now() - first).count() / (steps - skip);
    device = accelerator.device().str();
  }
  std::printf(
      "timing {\"mode\": \"%s%s\", \"config\": \"%s\", \"seq\": %lld, \"batch\": %lld, \"timed_steps\": %lld, "
      "\"step_ms\": %.3f, \"tokens_per_s\": %.1f, \"device\": \"%s\"}\n",
      mode.c_str(), compile ? " + graph" : "", o["--config"].c_str(), static_cast<long long>(seq),
      static_cast<long long>(batch), static_cast<long long>(steps - skip), step_ms, 1000.0 * batch * seq / step_ms,
      device.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_trainer: error: %s\n", e.what());
  return 1;
}
