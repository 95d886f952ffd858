// accel::label_smoothed_loss against Transformers' LabelSmoother on the
// same logits and labels (written by tests/peer/scripts/label_smoother_peer.py),
// with ignored labels, two smoothing factors, with and without the causal
// LM shift; and against the formula written out per row in float64.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/trainer/label_smoother.h"
#include "support/peers.h"
#include "support/temp_dir.h"

using namespace accel;

namespace {

// Per kept label: (1 - eps) * -log p[label] + eps * mean_j -log p[j]; the
// mean over kept labels.
double by_rows(const torch::Tensor& logits, const torch::Tensor& labels, double eps) {
  const auto nlp = -torch::log_softmax(logits.to(torch::kFloat64), -1).reshape({-1, logits.size(-1)});
  const auto y = labels.reshape({-1});
  double sum = 0;
  int64_t kept = 0;
  for (int64_t i = 0; i < y.size(0); ++i) {
    const int64_t c = y[i].item<int64_t>();
    if (c == -100) continue;
    sum += (1 - eps) * nlp[i][c].item<double>() + eps * nlp[i].mean().item<double>();
    ++kept;
  }
  return sum / static_cast<double>(kept);
}

}  // namespace

TEST(LabelSmootherPeer, SameLossAsTransformers) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("label_smoother_peer");
  const auto py = accel::testing::run_peer_script("label_smoother_peer.py", {dir.path().string()});
  const auto in = safetensors::load_file(dir.path() / "inputs.safetensors");
  const auto logits = in["logits"], labels = in["labels"];
  for (const double eps : {0.1, 0.3}) {
    for (const bool shift : {false, true}) {
      std::string key = "eps_" + std::string(eps == 0.1 ? "0.1" : "0.3") + "_shift_" + (shift ? "1" : "0");
      const double ours = label_smoothed_loss(logits, labels, eps, shift).item<double>();
      EXPECT_NEAR(ours, py.at(key).get<double>(), 1e-5) << key;
      const auto x = shift ? logits.narrow(1, 0, 5) : logits;
      const auto y = shift ? labels.narrow(1, 1, 5) : labels;
      EXPECT_NEAR(ours, by_rows(x, y, eps), 1e-5) << key;
    }
  }
  // Bad input names the shapes and types.
  EXPECT_THROW(label_smoothed_loss(logits, labels.narrow(1, 0, 5), 0.1), std::invalid_argument);
  EXPECT_THROW(label_smoothed_loss(logits, labels.to(torch::kFloat32), 0.1), std::invalid_argument);
}
