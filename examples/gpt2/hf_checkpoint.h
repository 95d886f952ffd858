#pragma once
// Hugging Face GPT-2 checkpoint folders, read and written:
//
//   <dir>/config.json            GPT2Config (config.h)
//   <dir>/model.safetensors      or model-0000k-of-0000n.safetensors + model.safetensors.index.json
//
//   gpt2::GPT2 model = gpt2::from_pretrained("gpt2");   // config and weights
//   gpt2::save_pretrained(*model, "out");                // transformers' from_pretrained reads it
//
// What differs between the files and the model (model.h), and why:
// - Conv1D: Hugging Face's GPT-2 keeps OpenAI's original layout, a "Conv1D"
//   whose weight is [in, out] and computes x @ W + b. torch::nn::Linear
//   holds [out, in] and computes x @ W^T + b: the same function with the
//   weight transposed. So c_attn, c_proj (attention and MLP) and c_fc
//   weights are transposed on the way in and out; their biases and every
//   other tensor (embeddings, LayerNorms) are laid out alike.
// - lm_head.weight: tied to transformer.wte.weight, so transformers' own
//   files leave it out. When a file has it, it must equal the embedding
//   (a model with a separate output projection is not this model).
// - Older files (and the hub's openai-community/gpt2, saved from GPT2Model)
//   name tensors without the "transformer." prefix and carry the causal
//   mask as buffers "h.<i>.attn.bias" / "h.<i>.attn.masked_bias". The
//   prefix is added; the mask buffers are skipped, since the attention
//   applies the causal mask itself (is_causal).
#include <filesystem>
#include <string>

#include "accel/checkpoint/safetensors.h"
#include "model.h"

namespace gpt2 {

/// Copies the checkpoint's weights (either layout) into `model`, wherever
/// its parameters live, casting from the file's dtype. Every tensor is
/// checked before any is copied: a missing or unexpected tensor, a shape
/// that differs, or an lm_head.weight unequal to the embedding throws
/// std::runtime_error naming the file and the tensor, with the model left
/// as it was.
void load_hf_weights(GPT2Impl& model, const std::filesystem::path& dir);

/// A model built from `dir`'s config.json with `dir`'s weights, on the CPU.
/// `dropout` is the training choice config.json does not decide (config.h).
GPT2 from_pretrained(const std::filesystem::path& dir, double dropout = 0.0);

/// The model's weights by Hugging Face's names and in its layout
/// (Conv1D weights transposed, no lm_head.weight), as fp32 CPU tensors.
accel::safetensors::NamedTensors hf_state(const GPT2Impl& model);
/// The same with the values taken from `state` by name (what
/// Accelerator::get_state_dict gives for a model whose parameters are
/// sharded and hold no data themselves); throws naming a missing one.
accel::safetensors::NamedTensors hf_state(const GPT2Impl& model, const accel::safetensors::NamedTensors& state);

/// Writes config.json and model.safetensors (fp32, sharded past
/// `max_shard_size` as transformers shards) into `dir`, which is created if
/// needed. Call it from one process (e.g. the main one).
void save_pretrained(const GPT2Impl& model, const std::filesystem::path& dir,
                     const std::string& max_shard_size = "5GB");
/// The same with the weights of hf_state(model, state).
void save_pretrained(const GPT2Impl& model, const accel::safetensors::NamedTensors& state,
                     const std::filesystem::path& dir, const std::string& max_shard_size = "5GB");

}  // namespace gpt2
