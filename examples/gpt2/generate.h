#pragma once
// Text generation with a GPT-2 model (model.h): the prompt runs once, then
// one token at a time with the keys and values of earlier positions kept in
// a KVCache (kv_cache.h), as transformers' GPT2LMHeadModel.generate does
// with use_cache=True.
//
//   gpt2::GenerateOptions options;
//   options.max_new_tokens(40);                                   // greedy
//   auto out = gpt2::generate(model, prompt, options).tokens;     // [batch, prompt + 40]
//
//   options.do_sample(true).seed(7);
//   options.sampling.top_k(50).top_p(0.9);                        // sampling.h
//
// The model may be on any device or dispatched over several
// (accel/big_model/dispatch.h). Its own tensors (embeddings, final norm)
// must then be resident, or the model a unit, called through it:
//
//   accel::Unit<gpt2::GPT2> root(model, "GPT2LMHeadModel");
//   accel::load_checkpoint_and_dispatch(*model, dir, ...);        // may offload anything
//   auto out = gpt2::generate(root, prompt, options).tokens;
//
// Generation runs without autograd and with the model in eval mode (no
// dropout); the model's mode is put back afterwards.
#include <cstdint>
#include <optional>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/unit/unit.h"
#include "model.h"
#include "sampling.h"

namespace gpt2 {

struct GenerateOptions {
  /// With do_sample: temperature, top_k, top_p. (First: TORCH_ARG leaves
  /// what follows it private.)
  SamplingOptions sampling;
  /// Tokens to add (>= 1); the prompt and these must fit in n_positions.
  TORCH_ARG(int64_t, max_new_tokens) = 20;
  /// false: greedy (the most likely token each step); true: drawn from the
  /// filtered distribution (`sampling`).
  TORCH_ARG(bool, do_sample) = false;
  /// The draws' seed: the same seed, prompt and model give the same tokens.
  TORCH_ARG(uint64_t, seed) = 0;
  /// A sequence that produces this token is finished: it gets the token
  /// and then `pad_token_id` (default: the eos token itself, as
  /// transformers does without a pad token); generation stops when every
  /// sequence is finished.
  TORCH_ARG(std::optional<int64_t>, eos_token_id) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, pad_token_id) = std::nullopt;
  /// false: no cache, the whole sequence runs through the model each step
  /// (slow; the reference the cache is tested against).
  TORCH_ARG(bool, use_cache) = true;
  /// Keep each step's next-token logits (Generated::logits).
  TORCH_ARG(bool, output_logits) = false;
};

struct Generated {
  /// [batch, prompt + new] int64, on the prompt's device.
  torch::Tensor tokens;
  /// With output_logits: one [batch, vocab] fp32 tensor per new token, the
  /// model's logits before any filtering (transformers' output_logits).
  std::vector<torch::Tensor> logits;
};

/// Throws std::invalid_argument naming the value when the options or the
/// prompt ([batch, seq] int64 tokens below vocab_size) cannot be generated
/// from with a model of `model_options`.
void check(const GenerateOptions& options, const torch::Tensor& prompt, const GPT2Options& model_options);

/// Generates from a model whose own tensors are resident: the prompt is
/// moved to the device of the token embedding.
Generated generate(GPT2& model, const torch::Tensor& prompt, const GenerateOptions& options);
/// Generates through the model's unit (its hooks move what they move).
Generated generate(accel::Unit<GPT2>& model, const torch::Tensor& prompt, const GenerateOptions& options);

}  // namespace gpt2
