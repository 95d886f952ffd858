#pragma once
// A GPT-2-shaped model for the device-map tests: embeddings, blocks that are
// units named "GPT2Block", a final norm, an output head whose weight is the
// token embedding's (tied, one level down so that Accelerate can split the
// head), a root parameter and buffers of several dtypes (bool, int64), as
// infer_auto_device_map meets in real models.
#include <torch/torch.h>

#include <vector>

#include "accel/unit/unit.h"

namespace accel::testing {

struct MapAttentionImpl : torch::nn::Module {
  explicit MapAttentionImpl(int64_t d, int64_t positions) {
    c_attn = register_module("c_attn", torch::nn::Linear(d, 3 * d));
    c_proj = register_module("c_proj", torch::nn::Linear(d, d));
    mask = register_buffer("mask", torch::ones({positions, positions}, torch::kBool).tril());
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t t = x.size(1);
    auto qkv = c_attn(x).chunk(3, -1);
    auto scores = torch::matmul(qkv[0], qkv[1].transpose(-1, -2)) / std::sqrt(static_cast<double>(x.size(-1)));
    scores = scores.masked_fill(mask.slice(0, 0, t).slice(1, 0, t).logical_not(), -1e4);
    return c_proj(torch::matmul(torch::softmax(scores, -1), qkv[2]));
  }
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  torch::Tensor mask;
};
TORCH_MODULE(MapAttention);

struct MapMlpImpl : torch::nn::Module {
  explicit MapMlpImpl(int64_t d) {
    c_fc = register_module("c_fc", torch::nn::Linear(d, 4 * d));
    c_proj = register_module("c_proj", torch::nn::Linear(4 * d, d));
  }
  torch::Tensor forward(const torch::Tensor& x) { return c_proj(torch::gelu(c_fc(x))); }
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(MapMlp);

struct MapBlockImpl : torch::nn::Module {
  MapBlockImpl(int64_t d, int64_t positions) {
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    attn = register_module("attn", MapAttention(d, positions));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    mlp = register_module("mlp", MapMlp(d));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn(ln_1(x));
    return x + mlp(ln_2(x));
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  MapAttention attn{nullptr};
  MapMlp mlp{nullptr};
};
TORCH_MODULE(MapBlock);

struct MapTransformerImpl : torch::nn::Module {
  MapTransformerImpl(int64_t vocab, int64_t d, int64_t positions, int64_t layers) {
    wte = register_module("wte", torch::nn::Embedding(vocab, d));
    wpe = register_module("wpe", torch::nn::Embedding(positions, d));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i) {
      blocks.emplace_back(MapBlock(d, positions), "GPT2Block");
      h->push_back(blocks.back().module());
    }
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    auto x = wte(tokens) + wpe(torch::arange(tokens.size(1), tokens.options()));
    for (auto& block : blocks) x = block(x);
    return ln_f(x);
  }
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
  std::vector<Unit<MapBlock>> blocks;
};
TORCH_MODULE(MapTransformer);

// Holds the tied weight (the head's "decoder").
struct MapDecoderImpl : torch::nn::Module {
  explicit MapDecoderImpl(const torch::Tensor& tied) { weight = register_parameter("weight", tied); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::matmul(x, weight.t()); }
  torch::Tensor weight;
};
TORCH_MODULE(MapDecoder);

struct MapHeadImpl : torch::nn::Module {
  MapHeadImpl(int64_t d, const torch::Tensor& tied) {
    proj = register_module("proj", torch::nn::Linear(d, d));
    decoder = register_module("decoder", MapDecoder(tied));
  }
  torch::Tensor forward(const torch::Tensor& x) { return decoder(torch::tanh(proj(x))); }
  torch::nn::Linear proj{nullptr};
  MapDecoder decoder{nullptr};
};
TORCH_MODULE(MapHead);

struct MapLMImpl : torch::nn::Module {
  MapLMImpl(int64_t vocab = 1000, int64_t d = 64, int64_t positions = 128, int64_t layers = 4) {
    scale = register_parameter("scale", torch::ones({d}));
    transformer = register_module("transformer", MapTransformer(vocab, d, positions, layers));
    lm_head = register_module("lm_head", MapHead(d, transformer->wte->weight));
    position_ids = register_buffer("position_ids", torch::arange(positions, torch::kLong));
  }
  torch::Tensor forward(const torch::Tensor& tokens) { return lm_head(transformer(tokens) * scale); }
  torch::Tensor scale, position_ids;
  MapTransformer transformer{nullptr};
  MapHead lm_head{nullptr};
};
TORCH_MODULE(MapLM);

}  // namespace accel::testing
