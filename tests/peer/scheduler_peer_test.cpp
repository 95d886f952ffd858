// accel::get_scheduler against transformers.get_scheduler (the .venv's
// Transformers 5.x): the same lr sequences for every scheduler type, both
// param groups, through warmup, decay and past the end of training. One
// Python start prints every case (tests/peer/scripts/schedules.py).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/optim/schedules.h"
#include "support/peers.h"

using namespace accel;

namespace {

const nlohmann::json& records() { return accel::testing::peer_script_json("schedules.py"); }

SchedulerKwargs kwargs_of(const nlohmann::json& k) {
  SchedulerKwargs out;
  if (k.contains("num_cycles")) out.num_cycles(k["num_cycles"].get<double>());
  if (k.contains("lr_end")) out.lr_end(k["lr_end"].get<double>());
  if (k.contains("power")) out.power(k["power"].get<double>());
  if (k.contains("timescale")) out.timescale(k["timescale"].get<int64_t>());
  return out;
}

}  // namespace

TEST(SchedulerPeer, EveryTypeEqualsTransformers) {
  REQUIRE_PEERS("torch", "transformers");
  int compared = 0, identical = 0;
  std::set<std::string> types;
  for (const auto& r : records()) {
    const std::string name = r["name"];
    const std::string where = r.dump().substr(0, 120);
    types.insert(name);
    // As the script's: two groups with their own lrs, another default lr.
    auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({3}, torch::requires_grad());
    torch::optim::AdamW opt(
        {torch::optim::OptimizerParamGroup({a}, std::make_unique<torch::optim::AdamWOptions>(1e-3)),
         torch::optim::OptimizerParamGroup({b}, std::make_unique<torch::optim::AdamWOptions>(5e-4))},
        torch::optim::AdamWOptions(2e-3));
    auto sched =
        get_scheduler(name, opt, r["warmup"].get<int64_t>(), r["training"].get<int64_t>(), kwargs_of(r["kwargs"]));
    const auto& lrs = r["lrs"];
    ASSERT_EQ(lrs.size(), 51u) << where;
    for (size_t step = 0; step < lrs.size(); ++step) {
      if (step > 0) sched->step();
      for (size_t g = 0; g < 2; ++g) {
        const double want = lrs[step][g].get<double>();
        const double got = opt.param_groups()[g].options().get_lr();
        EXPECT_NEAR(got, want, 1e-12 * std::abs(want)) << where << " step " << step << " group " << g;
        identical += got == want;
        ++compared;
      }
    }
  }
  EXPECT_EQ(types.size(), 7u) << "every SchedulerType";
  EXPECT_EQ(compared, 14 * 51 * 2);
  // The formulas keep Python's order of operations, so the match is exact.
  EXPECT_EQ(identical, compared);
}
