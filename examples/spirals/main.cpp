// Two spirals: a small MLP learns to tell two interleaved spirals apart.
// The same program runs alone or under `accel launch --num_processes N`:
// each rank trains on its share of every batch, DDP averages gradients.
//
//   ./build/examples/spirals                       # one process
//   ./build/accel launch --cpu --num_processes 2 ./build/examples/spirals
#include <cmath>
#include <cstdlib>
#include <iostream>

#include <torch/torch.h>

#include "accel/accel.h"

namespace {

// Points on two spirals (class 0 and 1) with a little noise; the data is
// made from a fixed seed, so every rank builds the same dataset.
std::pair<torch::Tensor, torch::Tensor> make_spirals(int64_t n_per_class, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto t = torch::rand({n_per_class}, gen) * 2.0 * M_PI + 0.5;
  std::vector<torch::Tensor> xs, ys;
  for (int c = 0; c < 2; ++c) {
    double sign = c == 0 ? 1.0 : -1.0;
    auto x = torch::stack({sign * t * torch::cos(t), sign * t * torch::sin(t)}, 1) / 10.0;
    xs.push_back(x + 0.02 * torch::randn({n_per_class, 2}, gen));
    ys.push_back(torch::full({n_per_class}, c, torch::kLong));
  }
  auto perm = torch::randperm(2 * n_per_class, gen);
  return {torch::cat(xs).index_select(0, perm), torch::cat(ys).index_select(0, perm)};
}

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int64_t hidden) {
    net = register_module("net", torch::nn::Sequential(torch::nn::Linear(2, hidden), torch::nn::ReLU(),
                                                       torch::nn::Linear(hidden, hidden), torch::nn::ReLU(),
                                                       torch::nn::Linear(hidden, 2)));
  }
  torch::Tensor forward(torch::Tensor x) { return net->forward(x); }
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(Mlp);

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

}  // namespace

int main() {
  auto& st = accel::state();
  const int epochs = env_int("SPIRALS_EPOCHS", 20);
  const int64_t global_batch = 64;
  if (global_batch % st.world_size() != 0) {
    std::cerr << "global batch " << global_batch << " must divide by the number of processes " << st.world_size() << "\n";
    return 2;
  }
  const int64_t local_batch = global_batch / st.world_size();
  accel::print("spirals: ", st.world_size(), " process(es) on ", st.device(), ", backend ",
               accel::to_string(st.backend()), ", global batch ", global_batch);

  auto [train_x, train_y] = make_spirals(1000, 1);
  auto [test_x, test_y] = make_spirals(500, 2);

  torch::manual_seed(0);
  Mlp model(64);
  model->to(st.device());
  std::optional<accel::DistributedDataParallel<Mlp>> ddp;
  if (st.distributed()) ddp.emplace(model, st.process_group());
  auto forward = [&](const torch::Tensor& x) { return ddp ? (*ddp)(x) : model(x); };
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(1e-4));

  const int64_t steps_per_epoch = train_x.size(0) / global_batch;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    auto perm = torch::randperm(train_x.size(0), at::detail::createCPUGenerator(100 + epoch));
    double loss_sum = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      // This rank's slice of the global batch.
      auto idx = perm.narrow(0, step * global_batch + st.rank() * local_batch, local_batch);
      auto x = train_x.index_select(0, idx).to(st.device());
      auto y = train_y.index_select(0, idx).to(st.device());
      optimizer.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(forward(x), y);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
    }
    auto mean_loss = accel::reduce(torch::tensor({loss_sum / steps_per_epoch}), accel::ReduceOp::mean);
    if (epoch % 5 == 4 || epoch == 0) accel::print("epoch ", epoch + 1, "/", epochs, "  loss ", mean_loss.item<double>());
  }

  // Each rank scores its share of the test set; the counts are summed.
  torch::NoGradGuard no_grad;
  auto shard = accel::split_between_processes(torch::arange(test_x.size(0)));
  auto pred = model(test_x.index_select(0, shard).to(st.device())).argmax(1).cpu();
  auto correct = (pred == test_y.index_select(0, shard)).sum().to(torch::kFloat64).reshape({1});
  auto totals = accel::reduce(torch::cat({correct, torch::tensor({static_cast<double>(shard.size(0))}, torch::kFloat64)}),
                              accel::ReduceOp::sum);
  double accuracy = totals[0].item<double>() / totals[1].item<double>();
  accel::print("test accuracy: ", accuracy * 100.0, "% on ", static_cast<int64_t>(totals[1].item<double>()), " points");
  return accuracy > 0.9 ? 0 : 1;
}
