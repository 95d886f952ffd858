// ZeRO memory per rank on the CPU: the bytes of optimizer state and of
// gradients each rank holds after a few AdamW steps, under DDP (the
// baseline), ZeRO-1 (shard_optimizer) and ZeRO-2 (shard_grad_op), with 2 and
// 4 ranks over Gloo, against theory (DDP: full; ZeRO: full / N for what is
// sharded). Bytes are counted from the tensors that exist on each rank: the
// optimizer's state tensors (accel::optimizer_state), and the gradients kept
// between steps (the parameters' .grad, ZeRO's gradient slices and ZeRO-1's
// flat gradient buffers); ZeRO-2's bucket buffers live only during backward
// and are reported as their peak.
//
//   build/bench/bench_zero_memory [hidden=1024] [ranks=2,4]
// Prints a markdown table (bench/zero_memory.sh runs it).
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/dist/launcher.h"
#include "accel/parallel/zero/zero_engine.h"

namespace {

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int64_t hidden) {
    net = register_module("net", torch::nn::Sequential(torch::nn::Linear(256, hidden), torch::nn::GELU(),
                                                       torch::nn::Linear(hidden, hidden), torch::nn::GELU(),
                                                       torch::nn::Linear(hidden, hidden), torch::nn::GELU(),
                                                       torch::nn::Linear(hidden, 10)));
  }
  torch::Tensor forward(torch::Tensor x) { return net->forward(x); }
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(Mlp);

struct Row {
  std::string strategy;
  int ranks;
  int64_t params, state, state_theory, grads, grads_theory, peak_buckets;
};

double mib(int64_t b) { return b / 1048576.0; }

// Runs in each rank; rank 0 writes its row (all ranks hold the same amounts
// up to padding; the largest over ranks is printed).
void measure(const std::string& name, std::optional<accel::ShardingOptions> sharding, int64_t hidden,
             const std::string& out_path) {
  accel::Accelerator acc(accel::AcceleratorOptions().sharding(sharding));
  torch::manual_seed(0);
  Mlp net(hidden);
  auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-4));
  int64_t numel = 0;
  for (auto& p : net->parameters()) numel += p.numel();
  auto [model, optimizer] = acc.prepare(net, opt);
  auto x = torch::randn({16, 256}), y = torch::randint(0, 10, {16});
  for (int s = 0; s < 3; ++s) {
    optimizer->zero_grad();
    acc.backward(torch::nn::functional::cross_entropy(model(x), y));
    optimizer->step();
  }
  // Gradients as they stand after backward (before zero_grad): one more backward.
  optimizer->zero_grad();
  acc.backward(torch::nn::functional::cross_entropy(model(x), y));
  int64_t state = 0;
  for (const auto& [n, t] : accel::optimizer_state(optimizer->optimizer()).tensors) state += t.nbytes();
  int64_t grads = 0, peak = 0;
  if (auto* engine = dynamic_cast<accel::zero::ZeroEngine*>(optimizer->tensors())) {
    optimizer->unscale_gradients();  // ZeRO-1: the reduce-scatter into the slices
    const auto m = engine->memory();
    grads = m.gradient_slices + m.full_gradients;
    peak = m.peak_buckets;
  } else {
    for (auto& p : net->parameters())
      if (p.grad().defined()) grads += p.grad().nbytes();
  }
  const int world = acc.num_processes();
  const bool sharded_state = sharding && sharding->strategy() != accel::ShardingStrategy::no_shard;
  const bool sharded_grads = sharding && sharding->strategy() == accel::ShardingStrategy::shard_grad_op;
  const int64_t full_state = 2 * 4 * numel, full_grads = 4 * numel;
  auto most = [&](int64_t v) { return acc.reduce(torch::tensor({v}), accel::ReduceOp::max).item<int64_t>(); };
  const Row r{name,
              world,
              numel,
              most(state),
              sharded_state ? full_state / world : full_state,
              most(grads),
              sharded_grads ? full_grads / world : full_grads,
              most(peak)};
  if (acc.is_main_process()) {
    FILE* f = std::fopen(out_path.c_str(), "a");
    const std::string peak = r.strategy == "ZeRO-2" ? std::to_string(mib(r.peak_buckets)).substr(0, 4) : "-";
    std::fprintf(f, "| %s | %d | %.2f | %.2f | %.3f | %.2f | %.2f | %.3f | %s |\n", r.strategy.c_str(), r.ranks,
                 mib(r.state), mib(r.state_theory), static_cast<double>(r.state) / full_state, mib(r.grads),
                 mib(r.grads_theory), static_cast<double>(r.grads) / full_grads, peak.c_str());
    std::fclose(f);
  }
  acc.wait_for_everyone();
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t hidden = argc > 1 ? std::atoll(argv[1]) : 1024;
  std::vector<int> ranks{2, 4};
  if (argc > 2) {
    ranks.clear();
    std::stringstream ss(argv[2]);
    for (std::string item; std::getline(ss, item, ',');) ranks.push_back(std::stoi(item));
  }
  const std::string out = "/tmp/bench_zero_memory_" + std::to_string(::getpid()) + ".md";
  std::remove(out.c_str());
  const int64_t numel = 256 * hidden + hidden + 2 * (hidden * hidden + hidden) + hidden * 10 + 10;
  std::printf("MLP 256-%ld-%ld-%ld-10: %ld parameters (%.2f MiB fp32), AdamW; per rank, MiB\n\n", hidden, hidden,
              hidden, numel, mib(4 * numel));
  std::printf("| strategy | ranks | optimizer state | theory | / full | gradients | theory | / full | bucket peak |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::fflush(stdout);
  for (int n : ranks) {
    const std::vector<std::pair<std::string, std::optional<accel::ShardingOptions>>> modes{
        {"DDP", std::nullopt},
        {"ZeRO-1", accel::ShardingOptions().strategy(accel::ShardingStrategy::shard_optimizer)},
        {"ZeRO-2", accel::ShardingOptions()
                       .strategy(accel::ShardingStrategy::shard_grad_op)
                       .reduce_bucket_size(hidden * hidden / 2)}};
    for (const auto& [name, sharding] : modes) {
      accel::LaunchOptions lo;
      lo.num_processes = n;
      const auto result =
          accel::launch_processes([&, name = name, sharding = sharding] { measure(name, sharding, hidden, out); }, lo);
      if (!result.ok()) {
        std::fprintf(stderr, "%s on %d ranks failed: %s\n", name.c_str(), n, result.describe().c_str());
        return 1;
      }
    }
  }
  std::FILE* f = std::fopen(out.c_str(), "r");
  if (!f) {
    std::fprintf(stderr, "no results (a rank failed)\n");
    return 1;
  }
  char line[512];
  while (std::fgets(line, sizeof line, f)) std::fputs(line, stdout);
  std::fclose(f);
  std::remove(out.c_str());
  return 0;
}
