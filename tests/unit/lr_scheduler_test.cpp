// LRScheduler and the Transformers schedules, each checked against its
// formula written out again here (in the textbook form, not the library's
// order of operations), at every step through warmup, decay and past the
// end; plus the scheduler's bookkeeping: every param group, any optimizer,
// resume from a saved state, and the errors bad input gets.
#include <cmath>
#include <functional>
#include <numbers>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/optim/lr_scheduler.h"
#include "accel/optim/schedules.h"
#include "support/errors.h"

using namespace accel;
using accel::testing::error_of;
using ::testing::HasSubstr;

namespace {

constexpr double kPi = std::numbers::pi;

// Relative 1e-12 (absolute near 0): the reference and the library evaluate
// the same formula in different orders.
void expect_close(double got, double want, const std::string& where) {
  EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want))) << where;
}

// Reference formulas. W: warmup steps, T: training steps, s: step.
double ref_warmup(int64_t s, int64_t W) { return W == 0 ? 1.0 : double(s) / double(W); }
double ref_linear(int64_t s, int64_t W, int64_t T) {
  if (s < W) return ref_warmup(s, W);
  return s >= T ? 0.0 : double(T - s) / double(T - W);
}
double ref_cosine(int64_t s, int64_t W, int64_t T, double cycles) {
  if (s < W) return ref_warmup(s, W);
  const double p = double(s - W) / double(T - W);
  return std::max(0.0, (1.0 + std::cos(2.0 * kPi * cycles * p)) / 2.0);
}
double ref_restarts(int64_t s, int64_t W, int64_t T, int64_t cycles) {
  if (s < W) return ref_warmup(s, W);
  const double p = double(s - W) / double(T - W);
  if (p >= 1.0) return 0.0;
  const double within = cycles * p - std::floor(cycles * p);  // position inside the current cycle
  return (1.0 + std::cos(kPi * within)) / 2.0;
}
double ref_poly(int64_t s, int64_t W, int64_t T, double lr0, double lr_end, double power) {
  if (s < W) return ref_warmup(s, W);
  const double lr = s > T ? lr_end : lr_end + (lr0 - lr_end) * std::pow(double(T - s) / double(T - W), power);
  return lr / lr0;
}
double ref_inverse_sqrt(int64_t s, int64_t W, double timescale) {
  if (s < W) return ref_warmup(s, W);
  return std::sqrt(timescale / (timescale + double(s - W)));
}

void check_schedule(const LrLambda& f, const std::function<double(int64_t)>& ref, int64_t last,
                    const std::string& name) {
  for (int64_t s = 0; s <= last; ++s) expect_close(f(s), ref(s), name + " at step " + std::to_string(s));
}

// Three groups with different lrs on one optimizer.
struct ThreeGroups {
  std::vector<torch::Tensor> params{torch::zeros({2}, torch::requires_grad()),
                                    torch::zeros({3}, torch::requires_grad()),
                                    torch::zeros({1}, torch::requires_grad())};
  std::vector<double> lrs{0.1, 0.02, 0.5};
  torch::optim::SGD sgd{
      {torch::optim::OptimizerParamGroup({params[0]}, std::make_unique<torch::optim::SGDOptions>(lrs[0])),
       torch::optim::OptimizerParamGroup({params[1]}, std::make_unique<torch::optim::SGDOptions>(lrs[1])),
       torch::optim::OptimizerParamGroup({params[2]}, std::make_unique<torch::optim::SGDOptions>(lrs[2]))},
      torch::optim::SGDOptions(1.0)};
};

std::vector<double> group_lrs(const torch::optim::Optimizer& opt) {
  std::vector<double> out;
  for (const auto& g : opt.param_groups()) out.push_back(g.options().get_lr());
  return out;
}

}  // namespace

// ---- the schedules against their formulas --------------------------------

TEST(Schedules, ConstantAndConstantWithWarmup) {
  check_schedule(
      schedules::constant(), [](int64_t) { return 1.0; }, 100, "constant");
  for (int64_t W : {0, 1, 7}) {
    check_schedule(
        schedules::constant_with_warmup(W), [W](int64_t s) { return s < W ? ref_warmup(s, W) : 1.0; }, 40,
        "constant_with_warmup W=" + std::to_string(W));
  }
  // Warmup 0 starts at the full lr: step 0 is already past warmup.
  EXPECT_EQ(schedules::constant_with_warmup(0)(0), 1.0);
}

TEST(Schedules, LinearWithWarmup) {
  for (auto [W, T] : {std::pair<int64_t, int64_t>{10, 50}, {0, 20}, {1, 2}, {5, 5}}) {
    check_schedule(
        schedules::linear_with_warmup(W, T), [=](int64_t s) { return ref_linear(s, W, T); }, T + 15,
        "linear W=" + std::to_string(W) + " T=" + std::to_string(T));
  }
  auto f = schedules::linear_with_warmup(10, 50);
  EXPECT_EQ(f(0), 0.0);
  EXPECT_DOUBLE_EQ(f(5), 0.5);
  EXPECT_EQ(f(10), 1.0);  // the warmup boundary is the peak
  EXPECT_DOUBLE_EQ(f(30), 0.5);
  EXPECT_EQ(f(50), 0.0);  // end of training
  EXPECT_EQ(f(80), 0.0);  // past the end: clipped, not negative
}

TEST(Schedules, CosineWithWarmup) {
  for (double cycles : {0.5, 1.0, 2.5}) {
    check_schedule(
        schedules::cosine_with_warmup(8, 40, cycles), [=](int64_t s) { return ref_cosine(s, 8, 40, cycles); }, 60,
        "cosine cycles=" + std::to_string(cycles));
  }
  auto f = schedules::cosine_with_warmup(10, 50);
  EXPECT_EQ(f(10), 1.0);
  EXPECT_NEAR(f(30), 0.5, 1e-15);  // half way down the half cosine
  EXPECT_NEAR(f(50), 0.0, 1e-15);
  // Past the end the half cycle turns up again (Transformers does not clip
  // progress for this schedule): cos of pi * 1.5 = 0 -> factor 0.5.
  EXPECT_NEAR(f(70), 0.5, 1e-12);
}

TEST(Schedules, CosineWithHardRestarts) {
  for (int64_t cycles : {1, 3}) {
    check_schedule(
        schedules::cosine_with_hard_restarts_with_warmup(5, 35, cycles),
        [=](int64_t s) { return ref_restarts(s, 5, 35, cycles); }, 50, "restarts cycles=" + std::to_string(cycles));
  }
  auto f = schedules::cosine_with_hard_restarts_with_warmup(0, 30, 3);
  EXPECT_EQ(f(0), 1.0);
  EXPECT_EQ(f(10), 1.0);  // a restart: back to the top at each cycle start
  EXPECT_EQ(f(20), 1.0);
  EXPECT_EQ(f(30), 0.0);
  EXPECT_EQ(f(31), 0.0);
}

TEST(Schedules, PolynomialDecay) {
  for (double power : {1.0, 2.0, 0.5}) {
    for (auto [W, T] : {std::pair<int64_t, int64_t>{6, 30}, {0, 10}}) {
      check_schedule(
          schedules::polynomial_decay_with_warmup(W, T, 1e-3, 1e-5, power),
          [=](int64_t s) { return ref_poly(s, W, T, 1e-3, 1e-5, power); }, T + 10,
          "polynomial power=" + std::to_string(power) + " W=" + std::to_string(W));
    }
  }
  auto f = schedules::polynomial_decay_with_warmup(4, 20, 2e-3);  // default lr_end 1e-7, power 1
  expect_close(f(4), 1.0, "start of decay");
  expect_close(f(20), 1e-7 / 2e-3, "end of training");
  expect_close(f(25), 1e-7 / 2e-3, "past the end");
  // Training shorter than warmup never divides: straight to lr_end.
  expect_close(schedules::polynomial_decay_with_warmup(10, 5, 1.0, 0.25)(12), 0.25, "T < W");
}

TEST(Schedules, InverseSqrt) {
  check_schedule(
      schedules::inverse_sqrt(10), [](int64_t s) { return ref_inverse_sqrt(s, 10, 10); }, 200, "inverse_sqrt W=10");
  check_schedule(
      schedules::inverse_sqrt(4, 100), [](int64_t s) { return ref_inverse_sqrt(s, 4, 100); }, 200,
      "inverse_sqrt W=4 timescale=100");
  // No warmup: the timescale defaults to 10'000, not 0.
  check_schedule(
      schedules::inverse_sqrt(0), [](int64_t s) { return ref_inverse_sqrt(s, 0, 10'000); }, 50, "inverse_sqrt W=0");
  EXPECT_DOUBLE_EQ(schedules::inverse_sqrt(4)(16), 0.5);  // sqrt(4 / 16)
}

// ---- LRScheduler -----------------------------------------------------------

TEST(LRScheduler, AppliesToEveryGroupFromItsOwnBaseLr) {
  ThreeGroups m;
  auto f = schedules::linear_with_warmup(3, 10);
  LRScheduler sched(m.sgd, f);
  EXPECT_EQ(sched.base_lrs(), m.lrs);
  EXPECT_EQ(sched.last_epoch(), 0);
  for (int64_t step = 0; step <= 12; ++step) {
    if (step > 0) sched.step();
    EXPECT_EQ(sched.last_epoch(), step);
    const auto lrs = group_lrs(m.sgd);
    ASSERT_EQ(lrs.size(), 3u);
    for (size_t g = 0; g < 3; ++g) {
      EXPECT_EQ(lrs[g], m.lrs[g] * f(step)) << "group " << g << " step " << step;
      EXPECT_EQ(sched.get_last_lr()[g], lrs[g]);
    }
  }
  // The defaults are not a group: untouched.
  EXPECT_EQ(m.sgd.defaults().get_lr(), 1.0);
}

TEST(LRScheduler, OneLambdaPerGroup) {
  ThreeGroups m;
  LRScheduler sched(m.sgd, {[](int64_t s) { return 1.0; }, [](int64_t s) { return 0.5 * s; },
                            [](int64_t s) { return 1.0 / (1 + s); }});
  sched.step();
  sched.step();
  EXPECT_EQ(group_lrs(m.sgd), (std::vector<double>{0.1, 0.02 * 1.0, 0.5 / 3}));
}

// The lr reaches the optimizer's update: SGD moves by lr * grad.
TEST(LRScheduler, TheOptimizerStepsWithTheScheduledLr) {
  auto p = torch::zeros({1}, torch::requires_grad());
  torch::optim::SGD sgd({p}, torch::optim::SGDOptions(0.1));
  LRScheduler sched(sgd, schedules::linear_with_warmup(2, 4));
  double expected = 0;
  for (int step = 0; step < 6; ++step) {
    sgd.zero_grad();
    p.sum().backward();  // grad 1
    sgd.step();
    expected -= 0.1 * schedules::linear_with_warmup(2, 4)(step);
    sched.step();
    EXPECT_NEAR(p.item<double>(), expected, 1e-7) << "after step " << step;
  }
}

// get_lr/set_lr are virtual on OptimizerOptions: every LibTorch optimizer works.
TEST(LRScheduler, WorksWithEveryLibTorchOptimizer) {
  auto p = torch::zeros({2}, torch::requires_grad());
  std::vector<std::unique_ptr<torch::optim::Optimizer>> opts;
  opts.push_back(std::make_unique<torch::optim::SGD>(std::vector<torch::Tensor>{p}, torch::optim::SGDOptions(0.3)));
  opts.push_back(std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{p}, torch::optim::AdamOptions(0.3)));
  opts.push_back(std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{p}, torch::optim::AdamWOptions(0.3)));
  opts.push_back(
      std::make_unique<torch::optim::RMSprop>(std::vector<torch::Tensor>{p}, torch::optim::RMSpropOptions(0.3)));
  opts.push_back(
      std::make_unique<torch::optim::Adagrad>(std::vector<torch::Tensor>{p}, torch::optim::AdagradOptions(0.3)));
  opts.push_back(std::make_unique<torch::optim::LBFGS>(std::vector<torch::Tensor>{p}, torch::optim::LBFGSOptions(0.3)));
  for (auto& opt : opts) {
    LRScheduler sched(*opt, schedules::constant_with_warmup(4));
    EXPECT_EQ(group_lrs(*opt)[0], 0.0);
    sched.step();
    EXPECT_DOUBLE_EQ(group_lrs(*opt)[0], 0.3 / 4);
    for (int i = 0; i < 5; ++i) sched.step();
    EXPECT_DOUBLE_EQ(group_lrs(*opt)[0], 0.3);
  }
}

TEST(LRScheduler, StateRoundTripResumesTheSameSequence) {
  auto f = schedules::cosine_with_warmup(4, 20);
  ThreeGroups full;
  LRScheduler uninterrupted(full.sgd, f);
  std::vector<std::vector<double>> want;
  for (int i = 0; i < 25; ++i) {
    uninterrupted.step();
    want.push_back(group_lrs(full.sgd));
  }

  ThreeGroups first;
  LRScheduler before(first.sgd, f);
  for (int i = 0; i < 9; ++i) before.step();
  const SchedulerState saved = before.state();
  EXPECT_EQ(saved.last_epoch, 9);
  EXPECT_EQ(saved.base_lrs, first.lrs);

  // A resumed run: a fresh optimizer (its lrs as configured) and scheduler.
  ThreeGroups second;
  LRScheduler after(second.sgd, f);
  after.load_state(saved);
  EXPECT_EQ(after.state(), saved);
  EXPECT_EQ(group_lrs(second.sgd), want[8]);  // load_state re-applies step 9's lr
  for (int i = 9; i < 25; ++i) {
    after.step();
    EXPECT_EQ(group_lrs(second.sgd), want[i]) << "step " << i + 1;
  }
}

TEST(LRScheduler, BadInputNamesTheValues) {
  ThreeGroups m;
  auto two = std::vector<LrLambda>{schedules::constant(), schedules::constant()};
  auto msg = error_of<std::invalid_argument>([&] { LRScheduler s(m.sgd, two); });
  EXPECT_THAT(msg, HasSubstr("2 lr lambdas"));
  EXPECT_THAT(msg, HasSubstr("3 param groups"));

  LRScheduler s(m.sgd, schedules::constant());
  msg = error_of<std::invalid_argument>([&] { s.load_state({5, {0.1, 0.2}}); });
  EXPECT_THAT(msg, HasSubstr("2 base lrs"));
  EXPECT_THAT(msg, HasSubstr("3 param groups"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { s.load_state({-1, {0.1, 0.2, 0.3}}); }), HasSubstr("-1"));
  EXPECT_THROW(LRScheduler(m.sgd, LrLambda{}), std::invalid_argument);

  // A group added after construction is refused rather than misaligned.
  m.sgd.add_param_group(torch::optim::OptimizerParamGroup({torch::zeros({1}, torch::requires_grad())},
                                                          std::make_unique<torch::optim::SGDOptions>(0.1)));
  EXPECT_THROW(s.step(), std::logic_error);
}

// ---- SchedulerType and get_scheduler --------------------------------------

TEST(GetScheduler, NamesRoundTrip) {
  for (auto t :
       {SchedulerType::linear, SchedulerType::cosine, SchedulerType::cosine_with_restarts, SchedulerType::polynomial,
        SchedulerType::constant, SchedulerType::constant_with_warmup, SchedulerType::inverse_sqrt})
    EXPECT_EQ(parse_scheduler_type(to_string(t)), t);
  EXPECT_EQ(to_string(SchedulerType::cosine_with_restarts), "cosine_with_restarts");
  const auto msg = error_of<std::invalid_argument>([] { parse_scheduler_type("cosnie"); });
  EXPECT_THAT(msg, HasSubstr("'cosnie'"));
  for (const char* name :
       {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"})
    EXPECT_THAT(msg, HasSubstr(std::string("'") + name + "'"));
}

TEST(GetScheduler, EachTypeIsItsSchedule) {
  const int64_t W = 5, T = 40;
  struct Case {
    const char* name;
    LrLambda f;
  };
  // The optimizer's default lr (2e-3) is polynomial's lr_init, as
  // Transformers' optimizer.defaults["lr"]; the groups have their own.
  std::vector<Case> cases{{"linear", schedules::linear_with_warmup(W, T)},
                          {"cosine", schedules::cosine_with_warmup(W, T)},
                          {"cosine_with_restarts", schedules::cosine_with_hard_restarts_with_warmup(W, T)},
                          {"polynomial", schedules::polynomial_decay_with_warmup(W, T, 2e-3)},
                          {"constant", schedules::constant()},
                          {"constant_with_warmup", schedules::constant_with_warmup(W)},
                          {"inverse_sqrt", schedules::inverse_sqrt(W)}};
  for (const auto& c : cases) {
    auto a = torch::zeros({1}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
    torch::optim::AdamW opt(
        {torch::optim::OptimizerParamGroup({a}, std::make_unique<torch::optim::AdamWOptions>(1e-3)),
         torch::optim::OptimizerParamGroup({b}, std::make_unique<torch::optim::AdamWOptions>(5e-4))},
        torch::optim::AdamWOptions(2e-3));
    auto sched = get_scheduler(c.name, opt, W, T);
    for (int64_t s = 0; s < 50; ++s) {
      if (s > 0) sched->step();
      EXPECT_EQ(group_lrs(opt), (std::vector<double>{1e-3 * c.f(s), 5e-4 * c.f(s)})) << c.name << " step " << s;
    }
  }
}

TEST(GetScheduler, RequiredArgumentsAsTransformers) {
  auto p = torch::zeros({1}, torch::requires_grad());
  torch::optim::SGD sgd({p}, torch::optim::SGDOptions(0.1));
  EXPECT_NO_THROW(get_scheduler(SchedulerType::constant, sgd));
  EXPECT_NO_THROW(get_scheduler(SchedulerType::constant_with_warmup, sgd, 3));
  EXPECT_NO_THROW(get_scheduler(SchedulerType::inverse_sqrt, sgd, 3));
  for (auto t : {SchedulerType::constant_with_warmup, SchedulerType::inverse_sqrt, SchedulerType::linear,
                 SchedulerType::cosine, SchedulerType::cosine_with_restarts, SchedulerType::polynomial}) {
    const auto msg = error_of<std::invalid_argument>([&] { get_scheduler(t, sgd, std::nullopt, 10); });
    EXPECT_THAT(msg, HasSubstr("num_warmup_steps"));
    EXPECT_THAT(msg, HasSubstr("'" + to_string(t) + "'"));
  }
  for (auto t :
       {SchedulerType::linear, SchedulerType::cosine, SchedulerType::cosine_with_restarts, SchedulerType::polynomial}) {
    const auto msg = error_of<std::invalid_argument>([&] { get_scheduler(t, sgd, 2); });
    EXPECT_THAT(msg, HasSubstr("num_training_steps"));
    EXPECT_THAT(msg, HasSubstr("'" + to_string(t) + "'"));
  }
}

TEST(GetScheduler, KwargsReachTheirScheduleOnly) {
  auto p = torch::zeros({1}, torch::requires_grad());
  torch::optim::SGD sgd({p}, torch::optim::SGDOptions(0.1));
  auto sched = get_scheduler("cosine_with_restarts", sgd, 0, 30, SchedulerKwargs().num_cycles(3));
  for (int i = 0; i < 10; ++i) sched->step();
  EXPECT_DOUBLE_EQ(sched->get_last_lr()[0], 0.1);  // restarted at step 10
  auto inv = get_scheduler("inverse_sqrt", sgd, 0, std::nullopt, SchedulerKwargs().timescale(4));
  for (int i = 0; i < 12; ++i) inv->step();
  EXPECT_DOUBLE_EQ(inv->get_last_lr()[0], 0.1 * 0.5);

  EXPECT_THAT(
      error_of<std::invalid_argument>([&] { get_scheduler("linear", sgd, 1, 10, SchedulerKwargs().num_cycles(2)); }),
      HasSubstr("'linear' takes no num_cycles"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { get_scheduler("cosine", sgd, 1, 10, SchedulerKwargs().power(2)); }),
              HasSubstr("'cosine' takes no power"));
  EXPECT_THAT(error_of<std::invalid_argument>(
                  [&] { get_scheduler("cosine_with_restarts", sgd, 1, 10, SchedulerKwargs().num_cycles(1.5)); }),
              HasSubstr("1.5"));
}

TEST(Schedules, BadInputNamesTheValues) {
  // As Transformers: lr_end must be below the initial lr.
  auto msg = error_of<std::invalid_argument>([] { schedules::polynomial_decay_with_warmup(1, 10, 1e-4, 1e-3); });
  EXPECT_THAT(msg, HasSubstr("0.001"));
  EXPECT_THAT(msg, HasSubstr("1e-04"));
  EXPECT_THROW(schedules::polynomial_decay_with_warmup(1, 10, 1e-3, 1e-3), std::invalid_argument);
  auto p = torch::zeros({1}, torch::requires_grad());
  torch::optim::SGD sgd({p}, torch::optim::SGDOptions(1e-8));
  msg = error_of<std::invalid_argument>([&] { get_scheduler("polynomial", sgd, 1, 10); });
  EXPECT_THAT(msg, HasSubstr("1e-07"));
  EXPECT_THAT(msg, HasSubstr("1e-08"));

  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::linear_with_warmup(-3, 10); }),
              HasSubstr("num_warmup_steps is -3"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::cosine_with_warmup(0, -1); }),
              HasSubstr("num_training_steps is -1"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::cosine_with_warmup(0, 10, -0.5); }), HasSubstr("-0.5"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::cosine_with_hard_restarts_with_warmup(0, 10, -2); }),
              HasSubstr("-2"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::inverse_sqrt(2, 0); }), HasSubstr("timescale is 0"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::polynomial_decay_with_warmup(5, 5, 1e-3); }),
              HasSubstr("(5)"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { schedules::polynomial_decay_with_warmup(0, 5, 1e-3, 0, -1); }),
              HasSubstr("power is -1"));
}
