// `accel test [--config_file F]`: launches a built-in distributed
// self-check with the configured processes. The workers are this binary
// again, run as the hidden `accel __test-worker` subcommand; each check is
// printed by rank 0, and the run ends with "Test is a success!" or the
// name of the failing check.
#include <unistd.h>

#include <climits>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/launch/run.h"
#include "accel/state.h"
#include "accel/util/check.h"
#include "commands.h"

namespace accel::cli {
namespace {

std::string self_path() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  ACCEL_CHECK(n > 0, "cannot find the accel binary (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

void expect(bool ok, const std::string& what) { ACCEL_CHECK(ok, what); }

// Each check runs on every rank; rank 0 reports.
void check(const std::string& name, const std::function<void()>& body) {
  auto& st = state();
  try {
    body();
  } catch (const std::exception& e) {
    fail<std::runtime_error>("check '", name, "' failed on rank ", st.rank(), ": ", e.what());
  }
  wait_for_everyone();
  if (st.is_main_process()) std::cout << "  ok  " << name << std::endl;
}

void process_ordering() {
  auto& st = state();
  // The main process must run the block before anyone else: it takes the
  // first ticket from the rendezvous store.
  int64_t ticket = -1;
  main_process_first([&] { ticket = st.distributed() ? st.store()->add("accel_test_order", 1) : 1; });
  auto tickets = gather(torch::tensor({ticket}));
  expect(tickets[0].item<int64_t>() == 1,
         "the main process did not go first (ticket " + std::to_string(tickets[0].item<int64_t>()) + ")");
  auto sorted = std::get<0>(tickets.sort());
  expect(torch::equal(sorted, torch::arange(1, st.world_size() + 1)), "tickets are not 1..world_size");
}

void broadcast_and_gather() {
  auto& st = state();
  auto all = gather(torch::tensor({static_cast<float>(st.rank())}));
  expect(torch::equal(all, torch::arange(st.world_size()).to(torch::kFloat)), "gather is not [0, 1, ..., world-1]");
  auto t = broadcast(torch::full({3}, static_cast<float>(st.rank() + 7)), 0);
  expect(torch::equal(t, torch::full({3}, 7.0f)), "broadcast did not give rank 0's tensor");
  auto objects = gather_object("rank" + std::to_string(st.rank()));
  for (int r = 0; r < st.world_size(); ++r) expect(objects[r] == "rank" + std::to_string(r), "gather_object order");
  auto sum = reduce(torch::tensor({1.0f}), ReduceOp::sum);
  expect(sum.item<float>() == st.world_size(), "reduce(sum) of ones is not the world size");
}

void random_state_sync() {
  auto& st = state();
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::manual_seed(1000 + st.rank());  // deliberately different
  // Accelerate's synchronize_rng_states: everyone takes rank 0's state.
  auto rng_state = gen.get_state();
  rng_state = broadcast(rng_state, 0);
  gen.set_state(rng_state);
  auto draws = gather(torch::rand({4}).unsqueeze(0));
  for (int r = 1; r < st.world_size(); ++r)
    expect(torch::equal(draws[r], draws[0]), "rank " + std::to_string(r) + " draws differ from rank 0's");
}

void data_sharding() {
  auto& st = state();
  const int64_t n = 2 * st.world_size() + 1;  // uneven on purpose
  std::vector<int64_t> items(n);
  for (int64_t i = 0; i < n; ++i) items[i] = i;
  auto mine = split_between_processes(items);
  auto [b, e] = split_range(n, st.rank(), st.world_size());
  expect(static_cast<int64_t>(mine.size()) == e - b, "shard size");
  std::string bytes(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(int64_t));
  auto shards = gather_object(bytes);
  std::vector<int64_t> all;
  for (auto& s : shards) {
    auto* p = reinterpret_cast<const int64_t*>(s.data());
    all.insert(all.end(), p, p + s.size() / sizeof(int64_t));
  }
  expect(all == items, "the shards do not add up to the data set, in order");
  auto padded = split_between_processes(items, true);
  expect(static_cast<int64_t>(padded.size()) == (n + st.world_size() - 1) / st.world_size(), "padded shard size");
}

// y = 2x + 3 + noise; full-batch gradient descent on w, b.
std::pair<float, float> train(const torch::Tensor& x, const torch::Tensor& y, int64_t global_n, bool all_reduce) {
  auto w = torch::zeros({1}), b = torch::zeros({1});
  for (int step = 0; step < 50; ++step) {
    auto err = w * x + b - y;
    auto grads = torch::stack({(2 * err * x).sum() / global_n, (2 * err).sum() / global_n});
    if (all_reduce) all_reduce_(grads, ReduceOp::sum);
    w -= 0.1 * grads[0];
    b -= 0.1 * grads[1];
  }
  return {w.item<float>(), b.item<float>()};
}

void training() {
  auto& st = state();
  torch::manual_seed(42);  // the same data everywhere
  const int64_t n = 64;
  auto x = torch::randn({n});
  auto y = 2 * x + 3 + 0.1 * torch::randn({n});
  auto [b, e] = split_range(n, st.rank(), st.world_size());
  auto [w_dist, b_dist] = train(x.slice(0, b, e), y.slice(0, b, e), n, st.distributed());
  auto [w_ref, b_ref] = train(x, y, n, false);
  expect(std::abs(w_dist - w_ref) < 1e-5 && std::abs(b_dist - b_ref) < 1e-5,
         "distributed training gave w=" + std::to_string(w_dist) + " b=" + std::to_string(b_dist) +
             ", single process w=" + std::to_string(w_ref) + " b=" + std::to_string(b_ref));
  expect(std::abs(w_ref - 2) < 0.2 && std::abs(b_ref - 3) < 0.2, "training did not fit y = 2x + 3");
}

int run_worker() {
  auto& st = state();
  if (st.is_main_process())
    std::cout << "Running the accel self-check on " << st.world_size() << " process(es), " << st.num_nodes()
              << " machine(s), device " << st.device() << std::endl;
  std::string failed;
  try {
    check("process ordering (main_process_first)", process_ordering);
    check("broadcast and gather", broadcast_and_gather);
    check("random state synchronisation", random_state_sync);
    check("data sharding (split_between_processes)", data_sharding);
    check("training equals the single-process result", training);
  } catch (const std::exception& e) {
    std::cerr << "accel test: " << e.what() << std::endl;
    return 1;
  }
  if (st.is_main_process()) std::cout << "Test is a success! You are ready for your distributed training!" << std::endl;
  ProcessState::shutdown();
  return 0;
}

}  // namespace

void register_test(CLI::App& app) {
  auto* cmd = app.add_subcommand("test", "Run a built-in distributed self-check with the configured processes");
  auto args = std::make_shared<launch::LaunchArgs>(launch::LaunchArgs::defaults());
  cmd->add_option_function<std::string>(
      "--config_file,--config-file", [args](const std::string& v) { args->set_flag("config_file", v); },
      "The config file to use (default: " + launch::default_config_path() + ")");
  cmd->callback([args] {
    args->program = self_path();
    args->program_args = {"__test-worker"};
    auto plan = make_plan(*args);
    std::cout << "Running: accel launch" << (plan.config_file ? " --config_file " + *plan.config_file : "")
              << " <self-check>" << std::endl;
    int status = launch::run_launch(plan, std::cerr);
    if (status != 0) std::cerr << "accel test: the self-check failed (status " << status << ")" << std::endl;
    set_exit_code(status);
  });

  auto* worker = app.add_subcommand("__test-worker", "");
  worker->group("");  // hidden: run by `accel test`
  worker->callback([] { set_exit_code(run_worker()); });

  // Hidden too: the smallest distributed program (process group up, one
  // barrier, exit), for measuring launch start-up.
  auto* init = app.add_subcommand("__init-group", "");
  init->group("");
  init->callback([] {
    wait_for_everyone();
    ProcessState::shutdown();
  });
}

}  // namespace accel::cli
