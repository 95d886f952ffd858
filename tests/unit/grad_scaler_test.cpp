// GradScaler on CPU: a scaled step equals the unscaled one (the scale is a
// power of two, so scaling and unscaling are exact), an inf or nan skips
// the step and backs the scale off, good steps grow it, and the sequence
// of scales over a scripted run equals a list worked out by hand.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/amp/grad_scaler.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::clones;
using accel::testing::error_of;
using accel::testing::expect_equal;
using ::testing::HasSubstr;

namespace {

// A small regression model; the seed makes every instance the same.
struct Model {
  torch::nn::Sequential net;
  Model() {
    torch::manual_seed(7);
    net = torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::Tanh(), torch::nn::Linear(8, 1));
  }
  torch::Tensor loss(int step) {
    torch::manual_seed(100 + step);
    auto x = torch::randn({16, 4});
    auto y = x.sum(1, true).sin();
    return torch::mse_loss(net->forward(x), y);
  }
  std::vector<torch::Tensor> params() { return net->parameters(); }
};

template <class Opt, class Options>
std::vector<torch::Tensor> train(const Options& options, GradScaler* scaler, int steps) {
  Model m;
  Opt opt(m.params(), options);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    auto loss = m.loss(s);
    if (scaler) {
      scaler->scale(loss).backward();
      EXPECT_TRUE(scaler->step(opt));
      scaler->update();
    } else {
      loss.backward();
      opt.step();
    }
  }
  return clones(m.params());
}

// Sets one gradient element to `value` (an overflow in backward).
void poison(Model& m, float value) {
  auto g = m.params()[0].mutable_grad();
  g.view(-1)[3] = value;
}

// Steps `scaler` through pattern[from, to) on a fresh Model ('I': an
// overflow, any other letter a good step): the scale after each step.
std::vector<double> scales_over(GradScaler& scaler, const std::string& pattern, size_t from, size_t to) {
  std::vector<double> scales;
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.01));
  for (size_t s = from; s < to; ++s) {
    opt.zero_grad();
    scaler.scale(m.loss(static_cast<int>(s))).backward();
    if (pattern[s] == 'I') poison(m, std::numeric_limits<float>::infinity());
    scaler.step(opt);
    scaler.update();
    scales.push_back(scaler.get_scale());
  }
  return scales;
}

}  // namespace

TEST(GradScaler, ScaledStepsEqualUnscaledStepsSGD) {
  GradScaler scaler(GradScalerOptions().growth_interval(2));  // the scale grows along the way
  const auto want = train<torch::optim::SGD>(torch::optim::SGDOptions(0.1).momentum(0.9), nullptr, 6);
  const auto got = train<torch::optim::SGD>(torch::optim::SGDOptions(0.1).momentum(0.9), &scaler, 6);
  expect_equal(got, want, "SGD");
  EXPECT_EQ(scaler.get_scale(), 65536.0 * 8);
}

TEST(GradScaler, ScaledStepsEqualUnscaledStepsAdamW) {
  GradScaler scaler;
  const auto want = train<torch::optim::AdamW>(torch::optim::AdamWOptions(1e-2), nullptr, 6);
  const auto got = train<torch::optim::AdamW>(torch::optim::AdamWOptions(1e-2), &scaler, 6);
  expect_equal(got, want, "AdamW");
  EXPECT_EQ(scaler.get_scale(), 65536.0);
  EXPECT_EQ(scaler.growth_tracker(), 6);
}

TEST(GradScaler, UnscaleGivesTheTrueGradients) {
  Model a, b;
  a.loss(0).backward();
  torch::optim::SGD opt(b.params(), torch::optim::SGDOptions(0.1));
  GradScaler scaler;
  auto scaled = scaler.scale(b.loss(0));
  scaled.backward();
  EXPECT_TRUE(torch::equal(b.params()[0].grad(), a.params()[0].grad() * 65536));
  scaler.unscale_(opt);
  EXPECT_FALSE(scaler.found_inf());
  for (size_t i = 0; i < a.params().size(); ++i) EXPECT_TRUE(torch::equal(b.params()[i].grad(), a.params()[i].grad()));
  // step() after an explicit unscale_ (to clip, say) does not unscale again.
  const auto before = clones(b.params());
  EXPECT_TRUE(scaler.step(opt));
  for (size_t i = 0; i < a.params().size(); ++i)
    EXPECT_TRUE(torch::allclose(b.params()[i], before[i] - 0.1 * a.params()[i].grad())) << i;
  scaler.update();
}

TEST(GradScaler, InfSkipsTheStepAndHalvesTheScale) {
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    Model m;
    torch::optim::AdamW opt(m.params(), torch::optim::AdamWOptions(1e-2));
    GradScaler scaler;
    scaler.scale(m.loss(0)).backward();
    poison(m, bad);
    const auto before = clones(m.params());
    EXPECT_FALSE(scaler.step(opt)) << bad;
    EXPECT_TRUE(scaler.found_inf());
    expect_equal(clones(m.params()), before, "skipped step");
    EXPECT_TRUE(opt.state().empty()) << "AdamW never ran";
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), 32768.0) << bad;
    EXPECT_EQ(scaler.growth_tracker(), 0);
    EXPECT_FALSE(scaler.found_inf()) << "update() starts a new iteration";
  }
}

TEST(GradScaler, GrowthAfterGrowthIntervalGoodSteps) {
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.01));
  GradScaler scaler(GradScalerOptions().init_scale(1024).growth_interval(3));
  const std::vector<double> scales{1024, 1024, 2048, 2048, 2048, 4096};
  const std::vector<int64_t> trackers{1, 2, 0, 1, 2, 0};
  for (int s = 0; s < 6; ++s) {
    opt.zero_grad();
    scaler.scale(m.loss(s)).backward();
    EXPECT_TRUE(scaler.step(opt));
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), scales[s]) << "after step " << s;
    EXPECT_EQ(scaler.growth_tracker(), trackers[s]) << "after step " << s;
  }
}

// The scale over a scripted run of good (G), inf (I) and nan (N) steps,
// init 1024, growth x2 after 2 good steps, backoff x0.5, worked out by hand.
TEST(GradScaler, ScriptedSequenceOfScales) {
  const std::string pattern = "GGIGNGGGGIIGG";
  const std::vector<double> want{1024, 2048, 1024, 1024, 512, 512, 1024, 1024, 2048, 1024, 512, 512, 1024};
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.01));
  GradScaler scaler(GradScalerOptions().init_scale(1024).growth_interval(2));
  for (size_t s = 0; s < pattern.size(); ++s) {
    opt.zero_grad();
    scaler.scale(m.loss(static_cast<int>(s))).backward();
    if (pattern[s] == 'I') poison(m, std::numeric_limits<float>::infinity());
    if (pattern[s] == 'N') poison(m, std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(scaler.step(opt), pattern[s] == 'G') << "step " << s;
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), want[s]) << "after step " << s << " (" << pattern[s] << ")";
  }
}

// DeepSpeed's rule (fp16 hysteresis 2, min_loss_scale 256): init 1024,
// growth x2 after 2 good steps, backoff x0.5. Worked out by hand with
// DeepSpeed's DynamicLossScaler.update_scale: an overflow with hysteresis
// left only uses one up; once used up every overflow backs off, never below
// the floor; a growth restores it; any overflow restarts the growth count.
TEST(GradScaler, HysteresisAndFloorFollowDeepSpeed) {
  const std::string pattern = "IGGIIIIGGIGIGG";
  const std::vector<double> want{1024, 1024, 2048, 2048, 1024, 512, 256, 256, 512, 512, 512, 256, 256, 512};
  const std::vector<int64_t> hysteresis{1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 2};
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.01));
  GradScaler scaler(GradScalerOptions().init_scale(1024).growth_interval(2).hysteresis(2).min_scale(256));
  EXPECT_EQ(scaler.hysteresis_tracker(), 2);
  for (size_t s = 0; s < pattern.size(); ++s) {
    opt.zero_grad();
    scaler.scale(m.loss(static_cast<int>(s))).backward();
    if (pattern[s] == 'I') poison(m, std::numeric_limits<float>::infinity());
    EXPECT_EQ(scaler.step(opt), pattern[s] == 'G') << "step " << s;
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), want[s]) << "after step " << s << " (" << pattern[s] << ")";
    EXPECT_EQ(scaler.hysteresis_tracker(), hysteresis[s]) << "after step " << s;
  }
}

TEST(GradScaler, HysteresisCounterSurvivesTheState) {
  const std::string pattern = "IGGIGIIG";
  const auto options = GradScalerOptions().init_scale(64).growth_interval(2).hysteresis(3).min_scale(0.5);
  GradScaler whole(options);
  const auto want = scales_over(whole, pattern, 0, pattern.size());
  // By hand: the 2nd overflow after the growth still only uses hysteresis up, the 3rd backs off.
  EXPECT_EQ(want, (std::vector<double>{64, 64, 128, 128, 128, 128, 64, 64}));

  GradScaler first(options);
  auto got = scales_over(first, pattern, 0, 4);  // I G G I: grown once, then one overflow absorbed
  const auto saved = first.state();
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(saved->hysteresis_tracker, 2);
  const auto tensors = saved->to_tensors();
  EXPECT_EQ(tensors.count("_hysteresis_tracker"), 1u);
  const auto restored = GradScalerState::from_tensors(tensors);
  EXPECT_EQ(restored, *saved);
  GradScaler second;  // PyTorch's options: the state brings hysteresis and floor
  second.load_state(restored);
  EXPECT_EQ(second.options().hysteresis(), 3);
  EXPECT_EQ(second.options().min_scale(), 0.5);
  EXPECT_EQ(second.hysteresis_tracker(), 2);
  const auto rest = scales_over(second, pattern, 4, pattern.size());
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, want);

  // A PyTorch-style scaler saves exactly PyTorch's keys, and reads back as one.
  const auto plain = GradScalerState{}.to_tensors();
  EXPECT_EQ(plain.size(), 5u);
  EXPECT_EQ(plain.count("hysteresis"), 0u);
  EXPECT_EQ(GradScalerState::from_tensors(plain), GradScalerState{});
  auto partial = tensors;
  partial.erase("min_scale");
  EXPECT_THAT(error_of([&] { GradScalerState::from_tensors(partial); }), HasSubstr("expected all three or none"));
  EXPECT_THAT(error_of([&] { second.load_state(GradScalerState{.hysteresis = 2, .hysteresis_tracker = 3}); }),
              HasSubstr("hysteresis_tracker is 3"));
}

TEST(GradScaler, TwoOptimizersShareOneUpdate) {
  Model a, b;
  torch::optim::SGD oa(a.params(), torch::optim::SGDOptions(0.1)), ob(b.params(), torch::optim::SGDOptions(0.1));
  GradScaler scaler;
  (scaler.scale(a.loss(0)) + scaler.scale(b.loss(0))).backward();
  poison(b, std::numeric_limits<float>::infinity());
  const auto before_a = clones(a.params());
  EXPECT_TRUE(scaler.step(oa));  // each optimizer skips on its own flag,
  EXPECT_FALSE(scaler.step(ob));
  scaler.update();  // the scale backs off if any found one
  EXPECT_FALSE(torch::equal(a.params()[0], before_a[0]));
  EXPECT_EQ(scaler.get_scale(), 32768.0);
}

TEST(GradScaler, DisabledIsTheIdentity) {
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.1));
  GradScaler scaler(GradScalerOptions().enabled(false));
  EXPECT_FALSE(scaler.enabled());
  auto loss = m.loss(0);
  EXPECT_TRUE(scaler.scale(loss).is_same(loss));
  loss.backward();
  poison(m, std::numeric_limits<float>::infinity());
  scaler.unscale_(opt);
  scaler.unscale_(opt);           // no bookkeeping when disabled
  EXPECT_TRUE(scaler.step(opt));  // steps even with inf: nothing is checked
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 1.0);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  EXPECT_FALSE(scaler.state().has_value());
  scaler.load_state(GradScalerState{});  // ignored, as PyTorch
  EXPECT_EQ(scaler.get_scale(), 1.0);
}

TEST(GradScaler, StateRoundTripContinuesTheSameScales) {
  const std::string pattern = "GGGIGGGG";
  const auto options = GradScalerOptions().init_scale(256).growth_interval(3).growth_factor(4).backoff_factor(0.25);
  GradScaler whole(options);
  const auto want = scales_over(whole, pattern, 0, pattern.size());

  GradScaler first(options);
  auto got = scales_over(first, pattern, 0, 5);
  const auto saved = first.state();
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(saved->growth_tracker, 1);
  // Through the tensor form a checkpoint writes.
  const auto restored = GradScalerState::from_tensors(saved->to_tensors());
  EXPECT_EQ(restored, *saved);
  GradScaler second;  // default options: load_state brings the saved ones
  second.load_state(restored);
  EXPECT_EQ(second.get_scale(), saved->scale);
  EXPECT_EQ(second.options().growth_interval(), 3);
  const auto rest = scales_over(second, pattern, 5, pattern.size());
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, want);
  // Loading into a scaler whose scale tensor already exists overwrites it.
  first.load_state(GradScalerState{.scale = 8.0, .growth_tracker = 2});
  EXPECT_EQ(first.get_scale(), 8.0);
  EXPECT_EQ(first.growth_tracker(), 2);
}

TEST(GradScaler, ScaleKeepsTheLossDevicesAndDtypes) {
  GradScaler scaler(GradScalerOptions().init_scale(4));
  auto half = torch::ones({3}, torch::kHalf);
  auto out = scaler.scale(half);
  EXPECT_EQ(out.scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(out, torch::full({3}, 4, torch::kHalf)));
  EXPECT_EQ(scaler.scale(torch::tensor(2.0, torch::kFloat64)).item<double>(), 8.0);
}

TEST(GradScaler, CallOrderErrors) {
  Model m;
  torch::optim::SGD opt(m.params(), torch::optim::SGDOptions(0.1));
  GradScaler scaler;
  EXPECT_THAT(error_of([&] { scaler.update(); }), HasSubstr("no optimizer was unscaled or stepped"));
  scaler.scale(m.loss(0)).backward();
  scaler.unscale_(opt);
  EXPECT_THROW(scaler.unscale_(opt), std::logic_error);
  scaler.step(opt);
  EXPECT_THROW(scaler.step(opt), std::logic_error);
  EXPECT_THAT(error_of([&] { scaler.unscale_(opt); }), HasSubstr("after step()"));
  scaler.update();
  opt.zero_grad();
  scaler.scale(m.loss(1)).backward();
  EXPECT_NO_THROW(scaler.step(opt));  // a new iteration
  scaler.update();
}

TEST(GradScaler, BadOptionsNameTheValue) {
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().growth_factor(1.0)); }), HasSubstr("growth_factor is 1"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().backoff_factor(1.5)); }),
              HasSubstr("backoff_factor is 1.5"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().backoff_factor(0)); }), HasSubstr("backoff_factor is 0"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().growth_interval(0)); }), HasSubstr("growth_interval is 0"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().init_scale(-2)); }), HasSubstr("init_scale is -2"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().init_scale(INFINITY)); }), HasSubstr("init_scale is inf"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().hysteresis(0)); }), HasSubstr("hysteresis is 0"));
  EXPECT_THAT(error_of([] { GradScaler(GradScalerOptions().min_scale(-1)); }), HasSubstr("min_scale is -1"));
  GradScaler ok;
  EXPECT_THAT(error_of([&] { ok.load_state(GradScalerState{.scale = 0}); }), HasSubstr("scale is 0"));
  EXPECT_THAT(error_of([&] { ok.load_state(GradScalerState{.growth_tracker = -1}); }),
              HasSubstr("growth_tracker is -1"));
  EXPECT_THAT(error_of([] { GradScalerState::from_tensors({}); }), HasSubstr("disabled GradScaler"));
  auto t = GradScalerState{}.to_tensors();
  t.erase("_growth_tracker");
  EXPECT_THAT(error_of([&] { GradScalerState::from_tensors(t); }), HasSubstr("'_growth_tracker' is missing"));
}

TEST(GradScaler, RefusesFp16Bf16AndSparseGradients) {
  GradScaler scaler;
  scaler.scale(torch::ones({}));
  auto half = torch::zeros({3}, torch::dtype(torch::kHalf).requires_grad(true));
  half.mutable_grad() = torch::ones({3}, torch::kHalf);
  torch::optim::SGD h({half}, torch::optim::SGDOptions(0.1));
  const auto msg = error_of([&] { scaler.unscale_(h); });
  EXPECT_THAT(msg, HasSubstr("fp16 gradient"));
  EXPECT_THAT(msg, HasSubstr("parameter 0 of param group 0"));

  auto bf = torch::zeros({2}, torch::dtype(torch::kBFloat16).requires_grad(true));
  bf.mutable_grad() = torch::ones({2}, torch::kBFloat16);
  torch::optim::SGD b({bf}, torch::optim::SGDOptions(0.1));
  EXPECT_THAT(error_of([&] { scaler.unscale_(b); }), HasSubstr("bf16 gradient"));

  auto emb = torch::nn::Embedding(torch::nn::EmbeddingOptions(10, 3).sparse(true));
  emb->forward(torch::tensor({1, 2})).sum().backward();
  ASSERT_TRUE(emb->weight.grad().is_sparse());
  torch::optim::SGD s(emb->parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_THAT(error_of([&] { scaler.unscale_(s); }), HasSubstr("sparse gradient"));
  // A refused call leaves no half-done iteration behind.
  EXPECT_THROW(scaler.update(), std::logic_error);
}
