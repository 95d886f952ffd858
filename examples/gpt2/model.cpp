#include "model.h"

#include <cmath>
#include <optional>
#include <string>

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>
#include <torch/torch.h>

#include "accel/ops/add_layer_norm.h"
#include "accel/ops/layer_norm.h"
#include "accel/ops/linear_cross_entropy.h"
#include "accel/ops/linear_gelu_linear.h"
#include "accel/ops/split_heads.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/tensor/parallelize.h"

namespace gpt2 {

namespace F = torch::nn::functional;

namespace {

// The type the LayerNorms write. Each one's output feeds a Linear (ln_f's
// the tied output projection), which under autocast casts it to autocast's
// type: writing that type in the LayerNorm's kernel gives the same values
// with half the bytes and no cast (accel/ops/layer_norm.h). Without
// autocast, ATen's type (unset).
std::optional<c10::ScalarType> norm_output_dtype(const torch::Tensor& x) {
  const auto device = x.device().type();
  if (!at::autocast::is_autocast_enabled(device)) return std::nullopt;
  return at::autocast::get_autocast_dtype(device);
}

// The module's LayerNorm through accel::layer_norm (one kernel each way on
// CUDA), with its own parameters and eps.
torch::Tensor layer_norm(const torch::nn::LayerNorm& ln, const torch::Tensor& x) {
  return accel::layer_norm(x, ln->weight, ln->bias,
                           accel::LayerNormOptions().eps(ln->options.eps()).output_dtype(norm_output_dtype(x)));
}

}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const GPT2Options& o) : n_head_(o.n_head()), dropout_(o.dropout()) {
  c_attn = register_module("c_attn", torch::nn::Linear(o.n_embd(), 3 * o.n_embd()));
  c_proj = register_module("c_proj", torch::nn::Linear(o.n_embd(), o.n_embd()));
  resid_dropout_ = register_module("resid_dropout", torch::nn::Dropout(o.dropout()));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, LayerCache* cache) {
  const int64_t B = x.size(0), C = x.size(2);
  // c_attn's output holds all queries, then all keys, then all values, each
  // n_head slices of C / n_head (Hugging Face's split order):
  // split_qkv_heads views them as [B, n_head, T, head_size] each without a
  // copy, and its backward writes the three gradients straight into one
  // tensor of c_attn's output layout.
  // Under tensor parallelism (tensor_parallel.h) c_attn yields this rank's
  // heads only, of each of q, k and v: the head count comes from its width.
  const int64_t head_size = C / n_head_;
  auto qkv_all = accel::parallel_linear(c_attn, x);
  // Under sequence parallel x is this rank's slice of the sequence and
  // c_attn gathers it whole: the length comes from its output.
  const int64_t T = qkv_all.size(1);
  const int64_t heads = qkv_all.size(-1) / (3 * head_size);
  auto qkv = accel::split_qkv_heads(qkv_all, head_size);
  torch::Tensor y;
  if (!cache) {
    // Causal SDPA, or attention across the context-parallel ranks when a
    // ContextParallelScope is open (each rank then holds part of the sequence).
    y = accel::context_parallel_attention(qkv[0], qkv[1], qkv[2], /*dropout_p=*/is_training() ? dropout_ : 0.0);
  } else {
    y = attend_cached(qkv[0], qkv[1], qkv[2], *cache);
  }
  return resid_dropout_(accel::parallel_linear(c_proj, y.transpose(1, 2).reshape({B, T, heads * head_size})));
}

torch::Tensor CausalSelfAttentionImpl::attend_cached(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v, LayerCache& cache) {
  const int64_t past = cache.length(), T = q.size(2);
  if (past == 0) {
    cache.keys = k.contiguous();
    cache.values = v.contiguous();
  } else {
    cache.keys = torch::cat({cache.keys, k}, 2);
    cache.values = torch::cat({cache.values, v}, 2);
  }
  const double p = is_training() ? dropout_ : 0.0;
  // SDPA's is_causal aligns the mask to the top left (query i sees keys
  // 0..i), right only without cached positions. One new token sees every
  // key; several after cached ones (a prompt given in pieces) see the
  // cached keys and the new ones up to their own position: query i sees
  // key j when j <= past + i.
  if (past == 0) return torch::scaled_dot_product_attention(q, cache.keys, cache.values, {}, p, /*is_causal=*/true);
  if (T == 1) return torch::scaled_dot_product_attention(q, cache.keys, cache.values, {}, p, /*is_causal=*/false);
  auto mask = torch::ones({T, past + T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).tril(past);
  return torch::scaled_dot_product_attention(q, cache.keys, cache.values, mask, p, /*is_causal=*/false);
}

MlpImpl::MlpImpl(const GPT2Options& o) {
  c_fc = register_module("c_fc", torch::nn::Linear(o.n_embd(), 4 * o.n_embd()));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * o.n_embd(), o.n_embd()));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  // Split by tensor parallelism, each layer goes through its seam; whole,
  // the MLP is one op (the GELU and the bias gradients ride in the GEMMs on
  // CUDA; at::linear + gelu elsewhere).
  if (accel::tensor_parallel_shard(*c_fc) || accel::tensor_parallel_shard(*c_proj))
    return dropout_(accel::parallel_linear(c_proj, torch::gelu(accel::parallel_linear(c_fc, x), "tanh")));
  return dropout_(accel::linear_gelu_linear(x, c_fc->weight, c_fc->bias, c_proj->weight, c_proj->bias));
}

BlockImpl::BlockImpl(const GPT2Options& o) {
  const auto norm = torch::nn::LayerNormOptions({o.n_embd()}).eps(o.layer_norm_epsilon());
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(norm));
  attn = register_module("attn", CausalSelfAttention(o));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(norm));
  mlp = register_module("mlp", Mlp(o));
}

torch::Tensor BlockImpl::forward(torch::Tensor x, LayerCache* cache) {
  // x + attn(...) and ln_2 of it as one op: one CUDA kernel each way where
  // accel's kernels are built, the same add and layer_norm elsewhere.
  auto [residual, h] =
      accel::add_layer_norm(x, attn(layer_norm(ln_1, x), cache), ln_2->weight, ln_2->bias,
                            accel::AddLayerNormOptions().eps(ln_2->options.eps()).output_dtype(norm_output_dtype(x)));
  return residual + mlp(h);
}

TransformerImpl::TransformerImpl(const GPT2Options& o) {
  wte = register_module("wte", torch::nn::Embedding(o.vocab_size(), o.n_embd()));
  wpe = register_module("wpe", torch::nn::Embedding(o.n_positions(), o.n_embd()));
  drop_ = register_module("drop", torch::nn::Dropout(o.dropout()));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.n_layer(); ++i) {
    blocks_.emplace_back(Block(o), "GPT2Block");
    h->push_back(blocks_.back().module());
  }
  ln_f = register_module("ln_f",
                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.n_embd()}).eps(o.layer_norm_epsilon())));
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens, KVCache* cache) {
  const int64_t past = cache ? cache->length() : 0;
  TORCH_CHECK(!cache || cache->n_layer() == static_cast<int64_t>(blocks_.size()), "GPT-2: a KV cache of ",
              cache ? cache->n_layer() : 0, " layers for a model of ", blocks_.size());
  // Under sequence parallel (tensor_parallel.h) the blocks and ln_f see this
  // rank's slice of the sequence: the whole one comes back after ln_f.
  if (!cache) {
    return final_norm(run_blocks(embed(tokens), 0, num_blocks()));
  }
  TORCH_CHECK(!accel::tensor_parallel_shard(*ln_f),
              "GPT-2: generation with a KV cache is not built for a model split with sequence_parallel (a new "
              "token cannot be split over the ranks); split it without sequence_parallel to generate");
  auto x = embed(tokens, past);
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i](x, &cache->layer(static_cast<int64_t>(i)));
  return final_norm(x);
}

torch::Tensor TransformerImpl::final_norm(const torch::Tensor& x) {
  return accel::leave_sequence_parallel(*ln_f, layer_norm(ln_f, x));
}

torch::Tensor TransformerImpl::embed(const torch::Tensor& tokens, int64_t past) {
  TORCH_CHECK(tokens.dim() == 2, "GPT-2 takes tokens of shape [batch, seq], got ", tokens.sizes());
  // Under context parallelism the tokens are this rank's part of a longer
  // sequence: the positions are their global ones, the length the whole one.
  const int64_t T = tokens.size(1), n_positions = wpe->weight.size(0);
  const int64_t whole = accel::context_parallel_sequence_length(T);
  TORCH_CHECK(past + whole <= n_positions, "GPT-2: a sequence of ", past + whole, " tokens (", past, " cached + ",
              whole, " new) is longer than n_positions = ", n_positions);
  auto positions = accel::context_parallel_positions(T, past, tokens.options());
  auto embeddings = accel::parallel_embedding(wte, tokens);
  if (embeddings_hook) embeddings = embeddings_hook(embeddings);
  return accel::enter_sequence_parallel(*blocks_.front().module()->ln_1, drop_(embeddings + wpe(positions)));
}

torch::Tensor TransformerImpl::run_blocks(torch::Tensor x, int64_t begin, int64_t end) {
  TORCH_CHECK(0 <= begin && begin <= end && end <= num_blocks(), "GPT-2: blocks [", begin, ", ", end,
              ") are not a range of its ", num_blocks(), " blocks");
  for (int64_t i = begin; i < end; ++i) x = blocks_[static_cast<size_t>(i)](x);
  return x;
}

GPT2Impl::GPT2Impl(const GPT2Options& options) : options_(options) {
  check(options_);
  transformer = register_module("transformer", Transformer(options_));
  init_weights();
}

torch::Tensor GPT2Impl::forward(const torch::Tensor& tokens, const torch::Tensor& targets, KVCache* cache) {
  TORCH_CHECK(!cache || !targets.defined(),
              "GPT-2: targets with a KV cache: the cache is for generation, the loss "
              "for training");
  // The tied output projection: logits against every token's embedding.
  // (Under tensor parallelism the vocabulary may be split: the seams gather
  // the logits, or compute the loss without gathering them.)
  if (!targets.defined()) return accel::parallel_tied_logits(transformer(tokens, cache), transformer->wte);
  return accel::parallel_tied_cross_entropy(transformer(tokens), transformer->wte, targets, loss_options);
}

int64_t GPT2Impl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void GPT2Impl::init_weights() {
  // GPT-2's scheme (and transformers' _init_weights): weights and
  // embeddings N(0, 0.02), biases 0, LayerNorms 1 and 0; the projections
  // that write into the residual stream (c_proj, two per block) are scaled
  // by 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth.
  torch::NoGradGuard no_grad;
  const double std = options_.initializer_range();
  const double residual_std = std / std::sqrt(2.0 * static_cast<double>(options_.n_layer()));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    auto& p = item.value();
    const bool ln = name.find(".ln_") != std::string::npos;
    if (name.ends_with(".bias")) {
      torch::nn::init::zeros_(p);
    } else if (ln) {
      torch::nn::init::ones_(p);
    } else if (name.ends_with("c_proj.weight")) {
      torch::nn::init::normal_(p, 0.0, residual_std);
    } else {
      torch::nn::init::normal_(p, 0.0, std);
    }
  }
}

}  // namespace gpt2
