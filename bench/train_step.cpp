// Training step time with the Accelerator: a small MLP or a small
// transformer encoder, AdamW, under whatever `accel launch` configured
// (DDP over Gloo or NCCL, mixed precision). The Python twin is
// bench/train_step.py (Accelerate + PyTorch DDP, same model, batch and
// threads); bench/train_step.sh runs both and prints the table.
//
//   accel launch --cpu --num_processes 2 build/bench/bench_train_step mlp 64 60
//   args: model (mlp|transformer) per-rank-batch steps [optimizer: adamw|fused]
// adamw is LibTorch's AdamW (the peer: torch.optim.AdamW's default), fused
// is accel::FusedAdamW (the peer: AdamW(fused=True)).
// Prints: the median and mean step time over the steps after 10 warm-up steps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/optim/fused_adamw.h"

namespace {

// 4 layers of 1024, as the Python twin.
struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    net = register_module(
        "net", torch::nn::Sequential(torch::nn::Linear(256, 1024), torch::nn::GELU(), torch::nn::Linear(1024, 1024),
                                     torch::nn::GELU(), torch::nn::Linear(1024, 1024), torch::nn::GELU(),
                                     torch::nn::Linear(1024, 10)));
  }
  torch::Tensor forward(torch::Tensor x) { return net->forward(x); }
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(Mlp);

// 2 encoder layers (d_model 256, 4 heads, ffn 1024, no dropout) over 64
// tokens, mean-pooled into 10 classes.
struct TinyTransformerImpl : torch::nn::Module {
  TinyTransformerImpl() {
    embed = register_module("embed", torch::nn::Embedding(1000, 256));
    auto layer = torch::nn::TransformerEncoderLayerOptions(256, 4).dim_feedforward(1024).dropout(0.0);
    encoder = register_module("encoder", torch::nn::TransformerEncoder(torch::nn::TransformerEncoderOptions(layer, 2)));
    head = register_module("head", torch::nn::Linear(256, 10));
  }
  torch::Tensor forward(torch::Tensor tokens) {
    auto h = embed(tokens).transpose(0, 1);  // (seq, batch, d): LibTorch's layout
    return head(encoder(h).mean(0));
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::TransformerEncoder encoder{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(TinyTransformer);

template <class Holder>
std::vector<double> run(accel::Accelerator& acc, Holder net, const torch::Tensor& x, const torch::Tensor& y, int steps,
                        bool fused) {
  std::shared_ptr<torch::optim::Optimizer> adamw;
  if (fused) {
    adamw = std::make_shared<accel::FusedAdamW>(net->parameters(), torch::optim::AdamWOptions(1e-4));
  } else {
    adamw = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-4));
  }
  auto [model, opt] = acc.prepare(net, adamw);
  auto xd = x.to(acc.device()), yd = y.to(acc.device());
  std::vector<double> ms;
  for (int s = 0; s < steps + 10; ++s) {
    if (acc.device().is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    auto loss = torch::nn::functional::cross_entropy(model(xd), yd);
    acc.backward(loss);
    opt->step();
    opt->zero_grad();
    if (acc.device().is_cuda()) torch::cuda::synchronize();
    loss.template item<float>();  // the host waits for the step, as a logging loop would
    if (s >= 10) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "mlp";
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 60;
  const std::string optimizer = argc > 4 ? argv[4] : "adamw";
  if (optimizer != "adamw" && optimizer != "fused") {
    std::fprintf(stderr, "unknown optimizer '%s': expected adamw or fused\n", optimizer.c_str());
    return 2;
  }
  const bool fused = optimizer == "fused";
  if (const char* t = std::getenv("OMP_NUM_THREADS")) torch::set_num_threads(std::atoi(t));
  accel::Accelerator acc;
  torch::manual_seed(0);
  std::vector<double> ms;
  if (which == "mlp") {
    ms = run(acc, Mlp(), torch::randn({batch, 256}), torch::randint(0, 10, {batch}), steps, fused);
  } else if (which == "transformer") {
    ms =
        run(acc, TinyTransformer(), torch::randint(0, 1000, {batch, 64}), torch::randint(0, 10, {batch}), steps, fused);
  } else {
    std::fprintf(stderr, "unknown model '%s': expected mlp or transformer\n", which.c_str());
    return 2;
  }
  auto sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  if (acc.is_main_process())
    std::printf("accel %s opt=%s ranks=%d batch=%lld mp=%s threads=%d median_ms=%.3f mean_ms=%.3f\n", which.c_str(),
                optimizer.c_str(), acc.num_processes(), static_cast<long long>(batch),
                accel::to_string(acc.mixed_precision()).c_str(), torch::get_num_threads(), median, mean);
  return 0;
}
