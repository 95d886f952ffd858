// Issue 20: load_state on 2 CPU ranks when the ranks would decide
// differently (one rank's random_states file missing): every rank refuses,
// each naming the rank that lacks the file, and nothing is loaded on any
// rank. And accel_state.json's fields are range-checked: a num_processes of
// 4294967298 (2 as an int) or a state file nested 200,000 deep is refused by
// name on every rank.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::read_file;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;
using accel::testing::TempDir;
namespace fs = std::filesystem;

namespace {

struct Prepared {
  Prepared() : acc(AcceleratorOptions().cpu(true)) {
    seed_cpu(1);
    torch::nn::Linear net(3, 2);
    auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), 0.1);
    auto [m, o] = acc.prepare(net, opt);
    model = net;
    optimizer = o;
  }
  Accelerator acc;
  torch::nn::Linear model{nullptr};
  std::shared_ptr<void> optimizer;  // kept alive with the Accelerator
};

TEST(LoadStateAgreement, AFileMissingOnOneRankStopsEveryRankBeforeLoading) {
  const TempDir dir("load_state");
  run_distributed(2, [&] {
    Prepared s;
    s.acc.save_state(dir / "ckpt");
    s.acc.wait_for_everyone();
    if (s.acc.process_index() == 0) fs::remove(dir / "ckpt" / "random_states_1.safetensors");
    s.acc.wait_for_everyone();
    // Changed weights, so that a load that happened would show.
    {
      torch::NoGradGuard no_grad;
      s.model->weight.fill_(42);
    }
    const std::string m = error_of([&] { s.acc.load_state(dir / "ckpt"); });
    EXPECT_NE(m.find("random_states_1.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("Nothing was loaded on any rank"), std::string::npos) << m;
    if (s.acc.process_index() == 0) {
      EXPECT_NE(m.find("rank 1:"), std::string::npos) << m;
    }
    EXPECT_TRUE(torch::all(s.model->weight == 42).item<bool>()) << "rank " << s.acc.process_index() << " loaded";
  });
}

TEST(LoadStateAgreement, StateFileFieldsAreRangeChecked) {
  const TempDir dir("load_state");
  run_distributed(2, [&] {
    Prepared s;
    s.acc.save_state(dir / "ckpt");
    s.acc.wait_for_everyone();
    const auto state = dir / "ckpt" / "accel_state.json";
    const std::string text = read_file(state);
    s.acc.wait_for_everyone();
    auto with = [&](const std::string& replaced) {
      if (s.acc.process_index() == 0) std::ofstream(state) << replaced;
      s.acc.wait_for_everyone();
      const std::string m = error_of([&] { s.acc.load_state(dir / "ckpt"); });
      s.acc.wait_for_everyone();
      return m;
    };
    const auto at = text.find("\"num_processes\": 2");
    ASSERT_NE(at, std::string::npos) << text;
    std::string big = text;
    big.replace(at, 18, "\"num_processes\": 4294967298");
    std::string m = with(big);
    EXPECT_NE(m.find("\"num_processes\" is 4294967298, expected an integer from 1 to 2147483647"), std::string::npos)
        << m;
    m = with("{\"format\": " + std::string(200'000, '[') + std::string(200'000, ']') + "}");
    EXPECT_NE(m.find("nests deeper than 64"), std::string::npos) << m.substr(0, 300);
    EXPECT_LT(m.size(), 2000u);
    std::string step = text;
    const auto g = step.find("\"gradient_step\"");
    ASSERT_NE(g, std::string::npos);
    step.insert(step.find(':', g) + 1, " -5, \"x\":");
    m = with(step);
    EXPECT_NE(m.find("\"gradient_step\" is -5"), std::string::npos) << m;
  });
}

}  // namespace
