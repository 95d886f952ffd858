// Two spirals: a small MLP learns to tell two interleaved spirals apart.
// Written the way a user writes a LibTorch loop with accel: the same
// program runs alone or under `accel launch --num_processes N`, in fp32 or
// bf16 (`--mixed_precision bf16`), with gradient accumulation
// (`--gradient_accumulation_steps 2`: accel's launcher passes it on in
// every mode, where Accelerate's does only for DeepSpeed), chosen at
// launch, not in the code.
//
//   ./build/examples/spirals                       # one process
//   ./build/accel launch --cpu --num_processes 2 ./build/examples/spirals
//   ./build/examples/spirals --log_with tensorboard --project_dir runs   # tensorboard --logdir runs
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "accel/accel.h"

namespace {

// Points on two spirals (class 0 and 1) with a little noise; the data is
// made from a fixed seed, so every rank builds the same dataset.
accel::TensorDict make_spirals(int64_t n_per_class, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto t = torch::rand({n_per_class}, gen) * 2.0 * M_PI + 0.5;
  std::vector<torch::Tensor> xs, ys;
  for (int c = 0; c < 2; ++c) {
    double sign = c == 0 ? 1.0 : -1.0;
    auto x = torch::stack({sign * t * torch::cos(t), sign * t * torch::sin(t)}, 1) / 10.0;
    xs.push_back(x + 0.02 * torch::randn({n_per_class, 2}, gen));
    ys.push_back(torch::full({n_per_class}, c, torch::kLong));
  }
  return {{"x", torch::cat(xs)}, {"y", torch::cat(ys)}};
}

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int64_t hidden) {
    net = register_module(
        "net", torch::nn::Sequential(torch::nn::Linear(2, hidden), torch::nn::ReLU(), torch::nn::Linear(hidden, hidden),
                                     torch::nn::ReLU(), torch::nn::Linear(hidden, 2)));
  }
  torch::Tensor forward(torch::Tensor x) { return net->forward(x); }
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(Mlp);

// A count from the environment, refused (naming the variable) unless it is
// an integer from 1 to `max`.
int env_count(const char* name, int fallback, int max) {
  const char* v = std::getenv(name);
  return v ? static_cast<int>(accel::parse_integer_in(v, std::string("environment variable ") + name, 1, max))
           : fallback;
}

}  // namespace

// Any error (a bad launch, a refused checkpoint, a collective that timed
// out) ends the program with its message and status 1, not a crash.
int main(int argc, char** argv) try {
  // The mode comes from the launcher and the length from the environment;
  // the only flags say where the run is recorded.
  accel::AcceleratorOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--log_with" || arg == "--project_dir") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--log_with")
        options.log_with({value});
      else
        options.project_config(accel::ProjectConfiguration().project_dir(value));
      continue;
    }
    (arg == "--help" || arg == "-h" ? std::cout : std::cerr)
        << (arg == "--help" || arg == "-h" ? "" : "spirals: unknown argument '" + arg + "'\n")
        << "usage: spirals [--log_with tensorboard] [--project_dir DIR]\n"
           "  --log_with       record the run (loss, learning rate, accuracy) with this tracker,\n"
           "                   under DIR/spirals (tensorboard --logdir DIR)\n"
           "  SPIRALS_EPOCHS   epochs to train (default: 20)\n"
           "  the mode (processes, mixed precision, accumulation) comes from the launcher, e.g.\n"
           "  accel launch --cpu --num_processes 2 --mixed_precision bf16 ./spirals\n";
    return arg == "--help" || arg == "-h" ? 0 : 2;
  }
  accel::Accelerator accelerator(options);  // everything else comes from `accel launch`
  const int epochs = env_count("SPIRALS_EPOCHS", 20, 1'000'000);
  const int64_t batch = 32;  // per process
  accel::print("spirals: ", accelerator.num_processes(), " process(es) on ", accelerator.device(), ", ",
               accel::to_string(accelerator.distributed_type()), ", mixed precision ",
               accel::to_string(accelerator.mixed_precision()), ", gradient accumulation ",
               accelerator.gradient_accumulation_steps());

  auto train = accel::make_data_loader(std::make_shared<accel::TensorDataset>(make_spirals(1000, 1)),
                                       accel::DataLoaderOptions(batch).shuffle(true));
  auto test = accel::make_data_loader(std::make_shared<accel::TensorDataset>(make_spirals(500, 2)),
                                      accel::DataLoaderOptions(256));

  torch::manual_seed(0);
  Mlp net(64);
  auto adamw =
      std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(1e-4));
  // The schedule counts batches of `batch` samples, as if in one process;
  // the prepared scheduler steps num_processes times per optimizer step.
  const int64_t total = epochs * train.size();
  auto schedule = accel::get_scheduler(accel::SchedulerType::cosine, *adamw, total / 20, total);
  auto [model, optimizer, scheduler, train_loader, test_loader] =
      accelerator.prepare(net, adamw, schedule, train, test);
  accelerator.init_trackers("spirals", {{"epochs", int64_t{epochs}},
                                        {"batch_per_process", batch},
                                        {"lr", 1e-2},
                                        {"mixed_precision", accel::to_string(accelerator.mixed_precision())}});

  for (int epoch = 0; epoch < epochs; ++epoch) {
    double loss_sum = 0;
    int64_t batches = 0;
    for (auto& b : train_loader) {
      auto scope = accelerator.accumulate(model);
      auto loss = torch::nn::functional::cross_entropy(model(b["x"]), b["y"]);
      accelerator.backward(loss);
      if (accelerator.sync_gradients()) accelerator.clip_grad_norm_(net->parameters(), 1.0);
      optimizer->step();
      scheduler->step();
      optimizer->zero_grad();
      loss_sum += loss.item<double>();
      ++batches;
    }
    auto mean_loss = accelerator.reduce(torch::tensor({loss_sum / batches}), accel::ReduceOp::mean);
    accelerator.log({{"train_loss", mean_loss.item<double>()}, {"lr", scheduler->get_last_lr()[0]}}, epoch + 1);
    if (epoch % 5 == 4 || epoch == 0)
      accel::print("epoch ", epoch + 1, "/", epochs, "  loss ", mean_loss.item<double>(), "  lr ",
                   scheduler->get_last_lr()[0]);
  }

  // Every rank scores its share of the test set; gather_for_metrics puts the
  // predictions together, each test point once.
  torch::NoGradGuard no_grad;
  int64_t correct = 0, seen = 0;
  for (auto& b : test_loader) {
    auto pred = accelerator.gather_for_metrics(model(b["x"]).argmax(1));
    auto target = accelerator.gather_for_metrics(b["y"]);
    correct += (pred == target).sum().item<int64_t>();
    seen += target.size(0);
  }
  const double accuracy = static_cast<double>(correct) / static_cast<double>(seen);
  accel::print("test accuracy: ", accuracy * 100.0, "% on ", seen, " points");
  accelerator.log({{"test_accuracy", accuracy}}, epochs);
  accelerator.end_training();
  return accuracy > 0.9 ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "spirals: error: " << accel::error_message(e) << std::endl;
  return 1;
}
