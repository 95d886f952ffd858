#pragma once
// The keys and values a GPT-2 model has computed, kept between forwards so
// that generating one more token runs the model on that token alone.
//
//   gpt2::KVCache cache(model->options().n_layer());
//   auto logits = model->forward(prompt, {}, &cache);     // [batch, T, vocab]; cache.length() == T
//   auto next = model->forward(last_token, {}, &cache);   // [batch, 1, vocab], over T + 1 positions
//
// Each layer's tensors are made by that layer's attention, from its own
// input, so they live on the device its block runs on: with blocks
// dispatched to several devices (accel/big_model/dispatch.h) each layer's
// cache stays beside its block and never moves. The cache reaches a block
// as a pointer, which the block's unit passes through untouched (hooks act
// on tensor arguments only).
#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace gpt2 {

/// One layer's keys and values, [batch, n_head, length, head_size]; empty
/// (undefined) before the first forward.
struct LayerCache {
  torch::Tensor keys, values;
  int64_t length() const { return keys.defined() ? keys.size(2) : 0; }
};

class KVCache {
 public:
  explicit KVCache(int64_t n_layer) : layers_(static_cast<size_t>(n_layer)) {}

  /// The positions cached (those of the first layer: every forward fills
  /// all layers alike).
  int64_t length() const { return layers_.empty() ? 0 : layers_.front().length(); }
  int64_t n_layer() const { return static_cast<int64_t>(layers_.size()); }
  LayerCache& layer(int64_t i) { return layers_.at(static_cast<size_t>(i)); }

 private:
  std::vector<LayerCache> layers_;
};

}  // namespace gpt2
