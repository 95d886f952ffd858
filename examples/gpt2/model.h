#pragma once
// A GPT-2 family decoder as LibTorch modules: token and position
// embeddings, n_layer pre-LayerNorm blocks (causal self-attention, then a
// GELU MLP, each added to the residual stream), a final LayerNorm, and the
// output projection tied to the token embedding.
//
// Parameter names are those of Hugging Face's GPT2LMHeadModel
// ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", ...), so
// that its checkpoints load name by name (hf_checkpoint.h). The linear
// layers are torch::nn::Linear, whose weight is [out, in]; Hugging Face
// stores the same layers as Conv1D [in, out], which the checkpoint code
// transposes. The tied output projection is not a module of its own: it is
// the token embedding's weight, so the optimizer sees that tensor once.
//
//   gpt2::GPT2 model(gpt2::named_config("124M"));
//   auto logits = model(tokens);            // [batch, seq] int64 -> [batch, seq, vocab]
//
// Generation (generate.h) passes a KVCache (kv_cache.h): each forward then
// runs only on the new tokens, attending over the cached ones as well.
// Without a cache (training) the code path is the one it always was.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "accel/ops/linear_cross_entropy.h"
#include "accel/trainer/neftune.h"
#include "accel/unit/unit.h"
#include "config.h"
#include "kv_cache.h"

namespace gpt2 {

/// Multi-head causal self-attention: one projection makes queries, keys and
/// values (c_attn, [3 * n_embd, n_embd]), scaled dot-product attention with
/// the causal mask (FlashAttention on CUDA where it applies), and the
/// output projection (c_proj).
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const GPT2Options& options);
  /// x [batch, T, n_embd]. With `cache`, x holds the T tokens after the
  /// cache's positions: their keys and values are appended to it and each
  /// token attends over the cached positions and the new ones up to itself.
  torch::Tensor forward(const torch::Tensor& x, LayerCache* cache = nullptr);

  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  // q, k, v [batch, n_head, T, head_size]: k and v appended to `cache`,
  // q attending over all it holds.
  torch::Tensor attend_cached(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              LayerCache& cache);

  int64_t n_head_;
  double dropout_;
  torch::nn::Dropout resid_dropout_{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

/// n_embd -> 4 * n_embd -> GELU (tanh approximation, GPT-2's gelu_new) -> n_embd.
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const GPT2Options& options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(Mlp);

/// x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const GPT2Options& options);
  /// `cache`: this layer's keys and values (see the attention).
  torch::Tensor forward(torch::Tensor x, LayerCache* cache = nullptr);

  torch::nn::LayerNorm ln_1{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

/// The decoder without the output projection (GPT2Model): hidden states.
/// Each block runs through its accel::Unit, named "GPT2Block" as Hugging
/// Face names the class, so Accelerate's FSDP configs
/// (fsdp_transformer_layer_cls_to_wrap: GPT2Block) shard it unchanged. The
/// embeddings and the final norm stay in the root unit: the token
/// embedding is also the tied output projection.
class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const GPT2Options& options);
  /// tokens [batch, seq] (int64) -> [batch, seq, n_embd]. With `cache`,
  /// the tokens come after its cached positions (their positions start at
  /// cache->length()), and the cache grows by seq; the cached and new
  /// positions together are at most n_positions.
  torch::Tensor forward(const torch::Tensor& tokens, KVCache* cache = nullptr);

  // forward without a cache in three pieces, for a pipeline stage
  // (pipeline_parallel.h) that runs only some of them: forward(tokens) is
  // final_norm(run_blocks(embed(tokens), 0, num_blocks())).

  /// tokens [batch, seq] -> the first block's input (embeddings, hook,
  /// dropout; under sequence parallel this rank's slice of the sequence);
  /// positions start at `past` (the cached ones, in generation).
  torch::Tensor embed(const torch::Tensor& tokens, int64_t past = 0);
  /// Blocks [begin, end) in order, each through its unit.
  torch::Tensor run_blocks(torch::Tensor x, int64_t begin, int64_t end);
  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  /// ln_f, as forward applies it (accel::layer_norm; under autocast its
  /// output comes in autocast's type, which the output projection takes),
  /// then under sequence parallel the whole sequence gathered back.
  torch::Tensor final_norm(const torch::Tensor& x);

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  /// Applied to wte's output when set (Hugging Face's input embeddings):
  /// the Trainer's NEFTune noise (accel/trainer/neftune.h) comes in here.
  accel::EmbeddingsHook embeddings_hook;
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  torch::nn::Dropout drop_{nullptr};
  std::vector<accel::Unit<Block>> blocks_;  // h's blocks, as units
};
TORCH_MODULE(Transformer);

/// GPT2LMHeadModel: next-token logits.
class GPT2Impl : public torch::nn::Module {
 public:
  /// Checks the options (config.h) and initialises the weights as GPT-2 does.
  explicit GPT2Impl(const GPT2Options& options = {});
  /// tokens [batch, seq] (int64) -> logits [batch, seq, vocab_size]; with
  /// `targets` (the next tokens, [batch, seq]) -> the mean cross-entropy
  /// instead, through accel::linear_cross_entropy: the value of
  /// cross_entropy over the logits, without materialising them. (One
  /// forward with default arguments: LibTorch's module holders cannot
  /// call an overloaded forward.) With `cache` (generation; no targets):
  /// the logits of the tokens that follow the cached ones (TransformerImpl).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& targets = {}, KVCache* cache = nullptr);

  const GPT2Options& options() const { return options_; }
  /// Parameters, with the tied embedding counted once.
  int64_t num_parameters() const;

  Transformer transformer{nullptr};
  /// How forward computes the loss (accel::linear_cross_entropy's options:
  /// chunks, the CUDA kernel, float32 or 16-bit logits under autocast);
  /// pipeline stages made after setting it take it too.
  accel::LinearCrossEntropyOptions loss_options;

 private:
  void init_weights();
  GPT2Options options_;
};
TORCH_MODULE(GPT2);

}  // namespace gpt2
