// The GPT-2 example's model against a plain float64 implementation written
// here from the formulas (explicit causal softmax attention, tanh GELU,
// LayerNorm by hand), on the model's own weights: the float32 logits and
// the float32 gradients of the loss agree with the float64 reference; and
// forward(tokens, targets), the fused loss, equals cross_entropy of the
// logits with the same gradients.
#include <cmath>
#include <map>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gpt2/model.h"

namespace F = torch::nn::functional;
using Weights = std::map<std::string, torch::Tensor>;

namespace {

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& g, const torch::Tensor& b) {
  auto mean = x.mean(-1, true);
  auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + 1e-5) * g + b;
}

torch::Tensor gelu_tanh(const torch::Tensor& x) {
  return 0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
}

// Weights are nn.Linear's [out, in]: y = x W^T + b.
// The token embeddings are multiplied by `embedding_scale` (not the tied
// output projection).
torch::Tensor reference_logits(const Weights& w, const torch::Tensor& tokens, int64_t n_layer, int64_t n_head,
                               double embedding_scale = 1) {
  auto at = [&](const std::string& k) { return w.at(k); };
  const int64_t T = tokens.size(1);
  auto x =
      at("transformer.wte.weight").index({tokens}) * embedding_scale + at("transformer.wpe.weight").narrow(0, 0, T);
  const int64_t C = x.size(-1), hs = C / n_head;
  auto mask = torch::ones({T, T}, torch::kBool).tril();
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    auto a = layer_norm(x, at(p + "ln_1.weight"), at(p + "ln_1.bias"));
    auto qkv = a.matmul(at(p + "attn.c_attn.weight").t()) + at(p + "attn.c_attn.bias");
    auto heads = [&](int64_t i) { return qkv.narrow(-1, i * C, C).view({x.size(0), T, n_head, hs}).transpose(1, 2); };
    auto q = heads(0), k = heads(1), v = heads(2);
    auto scores = q.matmul(k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hs));
    scores = scores.masked_fill(~mask, -std::numeric_limits<double>::infinity());
    auto y = torch::softmax(scores, -1).matmul(v).transpose(1, 2).reshape({x.size(0), T, C});
    x = x + y.matmul(at(p + "attn.c_proj.weight").t()) + at(p + "attn.c_proj.bias");
    auto m = layer_norm(x, at(p + "ln_2.weight"), at(p + "ln_2.bias"));
    m = gelu_tanh(m.matmul(at(p + "mlp.c_fc.weight").t()) + at(p + "mlp.c_fc.bias"));
    x = x + m.matmul(at(p + "mlp.c_proj.weight").t()) + at(p + "mlp.c_proj.bias");
  }
  x = layer_norm(x, at("transformer.ln_f.weight"), at("transformer.ln_f.bias"));
  return x.matmul(at("transformer.wte.weight").t());
}

struct Fixture {
  gpt2::GPT2 model{gpt2::named_config("tiny")};
  torch::Tensor tokens, targets;
  Fixture() {
    torch::manual_seed(3);
    model = gpt2::GPT2(gpt2::named_config("tiny"));
    auto g = at::detail::createCPUGenerator(4);
    tokens = torch::randint(0, 512, {2, 24}, g);
    targets = torch::randint(0, 512, {2, 24}, g);
  }
};

}  // namespace

TEST(Gpt2Model, ForwardAndBackwardMatchAFloat64Reference) {
  Fixture f;
  auto logits = f.model(f.tokens);
  auto loss = F::cross_entropy(logits.view({-1, 512}), f.targets.view({-1}));
  loss.backward();

  Weights w;
  for (auto& item : f.model->named_parameters())
    w[item.key()] = item.value().detach().to(torch::kDouble).requires_grad_();
  auto ref_logits = reference_logits(w, f.tokens, 2, 4);
  auto ref_loss = F::cross_entropy(ref_logits.view({-1, 512}), f.targets.view({-1}));
  ref_loss.backward();

  EXPECT_LT((logits.detach().to(torch::kDouble) - ref_logits.detach()).abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), 1e-5);
  for (auto& item : f.model->named_parameters()) {
    const auto& ref = w.at(item.key()).grad();
    const double scale = std::max(ref.abs().max().item<double>(), 1e-3);
    EXPECT_LT((item.value().grad().to(torch::kDouble) - ref).abs().max().item<double>(), 1e-3 * scale) << item.key();
  }
}

TEST(Gpt2Model, FusedLossEqualsCrossEntropyOfTheLogits) {
  Fixture a, b;
  auto fused = a.model(a.tokens, a.targets);
  fused.backward();
  auto logits = b.model(b.tokens);
  auto plain = F::cross_entropy(logits.view({-1, 512}), b.targets.view({-1}));
  plain.backward();
  EXPECT_NEAR(fused.item<double>(), plain.item<double>(), 1e-5);
  auto pa = a.model->named_parameters();
  auto pb = b.model->named_parameters();
  for (const auto& item : pa) {
    const auto& gb = pb[item.key()].grad();
    EXPECT_LT((item.value().grad() - gb).abs().max().item<double>(), 1e-5 + 1e-4 * gb.abs().max().item<double>())
        << item.key();
  }
}

// The embeddings hook (NEFTune's seam) sees the token embeddings, and what
// it returns is what the model runs on: a hook scaling them by c gives the
// logits of a model whose token embeddings are scaled by c (the output
// projection, tied to them, left as it was). Not a constant shift: every
// LayerNorm would remove it, and the logits would not change.
TEST(Gpt2Model, EmbeddingsHookActsOnTheTokenEmbeddings) {
  Fixture hooked;
  torch::Tensor seen;
  hooked.model->transformer->embeddings_hook = [&](const torch::Tensor& e) {
    seen = e.detach().clone();
    return e * 1.5;
  };
  torch::NoGradGuard no_grad;
  const auto logits = hooked.model(hooked.tokens);
  EXPECT_TRUE(torch::equal(seen, hooked.model->transformer->wte(hooked.tokens)));

  Weights w;
  for (auto& item : hooked.model->named_parameters()) w[item.key()] = item.value().detach().to(torch::kDouble);
  const auto ref = reference_logits(w, hooked.tokens, 2, 4, 1.5);
  EXPECT_LT((logits.to(torch::kDouble) - ref).abs().max().item<double>(), 1e-4);
  // Unscaled, the logits differ: the hook's result was used.
  EXPECT_GT((logits.to(torch::kDouble) - reference_logits(w, hooked.tokens, 2, 4)).abs().max().item<double>(), 1e-3);
}
