#pragma once
// The shape of a GPT-2 family model, with the names Hugging Face's GPT2Config
// uses in config.json (n_layer, n_head, n_embd, n_positions, vocab_size,
// layer_norm_epsilon), so that a checkpoint folder's config.json reads
// straight into it and one written from it is read by transformers.
//
//   auto options = gpt2::named_config("124M");            // 12 layers, 12 heads, 768 wide
//   auto options = gpt2::read_hf_config("gpt2/config.json");
#include <cstdint>
#include <filesystem>
#include <string>

#include <torch/arg.h>

namespace gpt2 {

struct GPT2Options {
  /// Defaults: GPT-2 small (124M), as GPT2Config's.
  TORCH_ARG(int64_t, n_layer) = 12;
  TORCH_ARG(int64_t, n_head) = 12;
  TORCH_ARG(int64_t, n_embd) = 768;
  /// The longest sequence: the number of learned position embeddings.
  TORCH_ARG(int64_t, n_positions) = 1024;
  TORCH_ARG(int64_t, vocab_size) = 50257;
  TORCH_ARG(double, layer_norm_epsilon) = 1e-5;
  /// One probability for the embedding, attention and residual dropouts.
  /// Not part of a checkpoint: config.json's *_pdrop are training settings
  /// of whoever trained it, so the training program chooses this.
  TORCH_ARG(double, dropout) = 0.0;
  /// The standard deviation of the initial weights (GPT2Config's initializer_range).
  TORCH_ARG(double, initializer_range) = 0.02;
};

/// "124M" (12 layers, 12 heads, 768 wide), "350M" (24, 16, 1024) or "tiny"
/// (2, 4, 64, 128 positions, 512 tokens: a model that trains in seconds on
/// a CPU). Anything else throws std::invalid_argument listing the names.
GPT2Options named_config(const std::string& name);

/// Throws std::invalid_argument naming the option and its value when the
/// options cannot make a model (a size below 1, n_embd not divisible by
/// n_head, an epsilon or dropout out of range, or a model larger than this
/// machine's memory: model_bytes() > physical_memory_bytes()).
void check(const GPT2Options& options);

/// An estimate of the memory the model's fp32 parameters and modules take.
double model_bytes(const GPT2Options& options);
/// This machine's memory (RAM), in bytes.
double physical_memory_bytes();

/// Reads a Hugging Face GPT-2 config.json. Keys it lacks take GPT2Config's
/// defaults, as transformers does. Throws std::runtime_error naming the
/// file, the key and the value when the file is not JSON, a value has the
/// wrong type, or the config asks for a GPT-2 variant this model does not
/// implement (another activation or n_inner, cross-attention, untied
/// embeddings, attention scaled by layer index or not at all).
GPT2Options read_hf_config(const std::filesystem::path& config_json);

/// config.json text for `options` that transformers' GPT2LMHeadModel reads.
std::string hf_config_json(const GPT2Options& options);

}  // namespace gpt2
