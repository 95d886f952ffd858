// A user's program: fits y = 3x - 1 with the Accelerator, alone or under
// `accel launch`, and prints what it learnt.
#include <accel/accel.h>
#include <torch/torch.h>

#include <cstdio>

int main() try {
  accel::Accelerator accelerator;
  torch::manual_seed(0);
  auto net = torch::nn::Linear(1, 1);
  auto sgd = std::make_shared<torch::optim::SGD>(net->parameters(), 0.1);
  auto [model, optimizer] = accelerator.prepare(net, sgd);
  // The data goes where prepare put the model (a GPU when there is one).
  const auto x = torch::linspace(-1, 1, 64).unsqueeze(1).to(accelerator.device());
  const auto y = 3 * x - 1;
  for (int step = 0; step < 200; ++step) {
    auto loss = torch::mse_loss(model(x), y);
    accelerator.backward(loss);
    optimizer->step();
    optimizer->zero_grad();
  }
  if (accelerator.is_main_process())
    std::printf("consumer: %d process(es), weight %.2f bias %.2f\n", accelerator.num_processes(),
                net->weight.item<double>(), net->bias.item<double>());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "consumer: %s\n", e.what());
  return 1;
}
