// gpt2 generate: tokens from a GPT-2 model, greedy or sampled, on one device
// or dispatched over the GPU and the CPU by a memory budget (Accelerate's
// device_map="auto" with max_memory). There is no tokenizer here: the
// prompt and the output are token ids.
//
//   ./build/examples/gpt2 generate --model ./gpt2-folder --prompt-tokens 464,2068,7586 --max-new-tokens 20
//   ./build/examples/gpt2 generate --model ./gpt2-xl --prompt-length 32 --max-new-tokens 128
//       --dtype fp16 --device cuda --max-memory 0:1GiB,cpu:100GiB --timing   (one command)
//
// --timing prints one machine-readable line (bench/generate.sh reads it):
//   timing {"impl": "accel", "tokens_per_s": ..., "ms_per_token": ..., ...}
// tokens/s: new tokens (batch x max_new_tokens) over the wall time of one
// generate call, after --warmup untimed calls.
#include "generate_cli.h"

#include <chrono>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#ifdef ACCEL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "accel/big_model/auto_device_map.h"
#include "accel/big_model/dispatch.h"
#include "accel/util/check.h"
#include "generate.h"
#include "hf_checkpoint.h"

namespace gpt2 {

namespace {

struct Flags {
  std::string model;            // a Hugging Face GPT-2 folder
  std::string config = "tiny";  // else a named shape with random weights
  std::string prompt_tokens;    // "1,2,3"
  int64_t prompt_length = 8, batch = 1, max_new_tokens = 20, warmup = 1, top_k = 50;
  double temperature = 1.0, top_p = 1.0;
  bool do_sample = false, timing = false;
  uint64_t seed = 0;
  int64_t eos = -1;
  std::string device = "cpu";
  std::string dtype = "fp32";
  std::string max_memory;   // "0:1GiB,cpu:100GiB": dispatch by infer_auto_device_map
  std::string offload_dir;  // where what the budgets leave for the disk goes
};

std::vector<std::string> split(const std::string& text, char at) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, at);)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

accel::MaxMemory parse_max_memory(const std::string& text) {
  accel::MaxMemory budgets;
  for (const auto& item : split(text, ',')) {
    const auto colon = item.rfind(':');
    ACCEL_CHECK_ARG(colon != std::string::npos && colon > 0 && colon + 1 < item.size(), "--max-memory: '", item,
                    "' is not DEVICE:SIZE (e.g. 0:1GiB or cpu:100GiB)");
    budgets.emplace_back(item.substr(0, colon), item.substr(colon + 1));
  }
  ACCEL_CHECK_ARG(!budgets.empty(), "--max-memory '", text, "' names no device");
  return budgets;
}

torch::ScalarType parse_dtype(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> names = {
      {"fp32", torch::kFloat}, {"fp16", torch::kHalf}, {"bf16", torch::kBFloat16}};
  return names.at(name);  // CLI11 checked the name
}

double peak_memory_mb(const c10::Device& device) {
#ifdef ACCEL_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(
               stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1024.0 * 1024.0);
  }
#endif
  return 0.0;
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace

int generate_main(int argc, char** argv) {
  Flags f;
  CLI::App app{"Generate tokens with a GPT-2 family model"};
  app.name("gpt2 generate");
  app.option_defaults()->always_capture_default();
  app.add_option("--model", f.model, "a Hugging Face GPT-2 folder (config.json + model.safetensors)");
  app.add_option("--config", f.config, "without --model: this shape with random weights (--seed)")
      ->check(CLI::IsMember({"124M", "350M", "tiny"}));
  app.add_option("--prompt-tokens", f.prompt_tokens, "the prompt's token ids, comma-separated (one sequence)");
  app.add_option("--prompt-length", f.prompt_length, "without --prompt-tokens: this many random tokens (--seed)")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", f.batch, "without --prompt-tokens: sequences of random tokens")->check(CLI::PositiveNumber);
  app.add_option("--max-new-tokens", f.max_new_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  app.add_flag("--do-sample", f.do_sample, "sample (top-k, top-p, temperature) instead of greedy");
  app.add_option("--temperature", f.temperature, "with --do-sample: logits divided by this");
  app.add_option("--top-k", f.top_k, "with --do-sample: keep the k most likely tokens (0: all)");
  app.add_option("--top-p", f.top_p, "with --do-sample: keep the most likely tokens up to this probability");
  app.add_option("--seed", f.seed, "the draws (and random weights or prompt)");
  app.add_option("--eos", f.eos, "stop a sequence at this token (-1: none)");
  app.add_option("--device", f.device, "where the model runs (cpu, cuda, cuda:N); with --max-memory the GPU");
  app.add_option("--dtype", f.dtype, "the weights' dtype")->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  app.add_option("--max-memory", f.max_memory,
                 "dispatch as device_map=\"auto\" with these budgets, e.g. 0:1GiB,cpu:100GiB (what does not fit on "
                 "the GPU is offloaded to the CPU and brought in per block)");
  app.add_option("--offload-dir", f.offload_dir,
                 "with --max-memory: a folder for the tensors the budgets leave to the disk");
  app.add_option("--warmup", f.warmup, "untimed generate calls first")->check(CLI::NonNegativeNumber);
  app.add_flag("--timing", f.timing, "print a machine-readable timing line");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  torch::manual_seed(static_cast<uint64_t>(f.seed));
  GPT2 model = f.model.empty() ? GPT2(named_config(f.config)) : from_pretrained(f.model);
  // The model as a unit: dispatch may then offload its own tensors too
  // (embeddings, final norm), and its tokens and logits cross devices at it.
  accel::Unit<GPT2> root(model, "GPT2LMHeadModel");
  const auto dtype = parse_dtype(f.dtype);
  c10::Device device(f.device);
  if (device.is_cuda() && !device.has_index()) device = c10::Device(c10::kCUDA, 0);  // device maps say cuda:0
  std::string placement = device.str();
  int64_t blocks_on_device = model->options().n_layer();
  if (!f.max_memory.empty()) {
    const auto map = accel::infer_auto_device_map(*model, accel::DeviceMapOptions()
                                                              .max_memory(parse_max_memory(f.max_memory))
                                                              .no_split_module_classes({"GPT2Block"})
                                                              .dtype(dtype));
    const auto placed = accel::dispatch_model(
        *model, accel::DispatchOptions().device_map(map).dtype(dtype).main_device(device).offload_dir(f.offload_dir));
    blocks_on_device = 0;
    for (int64_t i = 0; i < model->options().n_layer(); ++i)
      if (accel::device_for(placed.device_map, "transformer.h." + std::to_string(i)) == device.str())
        ++blocks_on_device;
    placement = "max_memory " + f.max_memory;
    std::cerr << "gpt2 generate: " << blocks_on_device << " of " << model->options().n_layer() << " blocks on "
              << device << ", the rest offloaded\n";
  } else {
    model->to(device, dtype);
  }

  torch::Tensor prompt;
  if (!f.prompt_tokens.empty()) {
    std::vector<int64_t> ids;
    for (const auto& id : split(f.prompt_tokens, ',')) ids.push_back(std::stoll(id));
    prompt = torch::tensor(ids, torch::kLong).unsqueeze(0);
  } else {
    prompt = torch::randint(model->options().vocab_size(), {f.batch, f.prompt_length}, torch::kLong);
  }
  prompt = prompt.to(device);

  GenerateOptions options;
  options.max_new_tokens(f.max_new_tokens).do_sample(f.do_sample).seed(f.seed);
  if (f.eos >= 0) options.eos_token_id(f.eos);
  options.sampling.temperature(f.temperature).top_k(f.top_k).top_p(f.top_p);

  for (int64_t i = 0; i < f.warmup; ++i) generate(root, prompt, options);
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  const auto out = generate(root, prompt, options).tokens.cpu();
  synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (int64_t b = 0; b < out.size(0); ++b) {
    auto row = out[b];
    for (int64_t t = 0; t < row.size(0); ++t) std::cout << (t ? "," : "") << row[t].item<int64_t>();
    std::cout << "\n";
  }
  const int64_t new_tokens = out.size(0) * (out.size(1) - prompt.size(1));
  std::cerr << "gpt2 generate: " << new_tokens << " new tokens in " << seconds << " s, "
            << static_cast<double>(new_tokens) / seconds << " tokens/s\n";
  if (f.timing) {
    const nlohmann::json line = {
        {"impl", "accel"},
        {"model", f.model.empty() ? f.config : f.model},
        {"n_layer", model->options().n_layer()},
        {"n_embd", model->options().n_embd()},
        {"dtype", f.dtype},
        {"device", device.str()},
        {"placement", placement},
        {"blocks_on_device", blocks_on_device},
        {"batch", prompt.size(0)},
        {"prompt", prompt.size(1)},
        {"new_tokens", new_tokens},
        {"seconds", seconds},
        {"tokens_per_s", static_cast<double>(new_tokens) / seconds},
        {"ms_per_token", seconds * 1e3 / static_cast<double>(out.size(1) - prompt.size(1))},
        {"peak_mem_mb", peak_memory_mb(device)},
    };
    std::cout << "timing " << line.dump() << std::endl;
  }
  return 0;
}

}  // namespace gpt2
