// The tensors transformers' base models are built with, derived from a
// config.json: the shapes of GPT2Model and LlamaModel as transformers 5
// defines them (the version pinned in requirements.txt; the peer test
// checks them against it).
#include <algorithm>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "accel/big_model/tensor_shapes.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"
#include "accel/util/user_json.h"

namespace accel {
namespace {

using nlohmann::json;

// No real model has a dimension near this; a larger one is a broken file.
constexpr int64_t kMaxDimension = int64_t{1} << 40;

// A config.json and where it came from, for messages.
struct Config {
  json root;
  std::string source;

  // The first of `keys` the file holds (transformers' aliases, e.g. n_embd
  // and hidden_size), or nullptr; a null value counts as absent, as None
  // does in transformers.
  const json* find(std::initializer_list<const char*> keys, std::string* found = nullptr) const {
    for (const char* key : keys) {
      auto it = root.find(key);
      if (it != root.end() && !it->is_null()) {
        if (found) *found = key;
        return &*it;
      }
    }
    return nullptr;
  }

  // A size: an integer from `min` up; `fallback` when absent.
  int64_t size(std::initializer_list<const char*> keys, std::optional<int64_t> fallback, int64_t min = 1) const {
    std::string key = *keys.begin();
    const json* value = find(keys, &key);
    if (!value) {
      ACCEL_CHECK_ARG(fallback.has_value(), source, ": \"", key, "\" is missing");
      return *fallback;
    }
    ACCEL_CHECK_ARG(
        value->is_number_integer() && value->get<int64_t>() >= min && value->get<int64_t>() <= kMaxDimension, source,
        ": \"", key, "\" is ", json_excerpt(*value), ", expected an integer from ", min, " to ", kMaxDimension);
    return value->get<int64_t>();
  }

  bool flag(const char* key, bool fallback) const {
    const json* value = find({key});
    if (!value) return fallback;
    ACCEL_CHECK_ARG(value->is_boolean(), source, ": \"", key, "\" is ", json_excerpt(*value),
                    ", expected true or false");
    return value->get<bool>();
  }

  // An object-valued key (rope_parameters), or nullptr.
  const json* object(std::initializer_list<const char*> keys) const {
    std::string key;
    const json* value = find(keys, &key);
    ACCEL_CHECK_ARG(!value || value->is_object(), source, ": \"", key, "\" is ", json_excerpt(*value),
                    ", expected an object");
    return value;
  }
};

// Builds the list in module order.
class Shapes {
 public:
  void add(std::string name, std::vector<int64_t> shape) { out_.push_back({std::move(name), std::move(shape)}); }
  // A linear or LayerNorm-like module: weight, then bias when it has one.
  void weight_bias(const std::string& module, std::vector<int64_t> weight, int64_t bias_size, bool bias = true) {
    add(module + ".weight", std::move(weight));
    if (bias) add(module + ".bias", {bias_size});
  }
  TensorShapes take() { return std::move(out_); }

 private:
  TensorShapes out_;
};

// transformers' GPT2Model (wte, wpe, h.<i>, ln_f); Conv1D weights are
// stored [in, out].
TensorShapes gpt2(const Config& c) {
  const int64_t vocab = c.size({"vocab_size"}, 50257);
  const int64_t positions = c.size({"n_positions", "max_position_embeddings"}, 1024);
  const int64_t embed = c.size({"n_embd", "hidden_size"}, 768);
  const int64_t layers = c.size({"n_layer", "num_hidden_layers"}, 12, 0);
  const int64_t heads = c.size({"n_head", "num_attention_heads"}, 12);
  const int64_t inner = c.size({"n_inner"}, 4 * embed);
  const bool cross = c.flag("add_cross_attention", false);
  ACCEL_CHECK_ARG(embed % heads == 0, c.source, ": n_embd ", embed, " is not a multiple of n_head ", heads,
                  " (GPT2Attention needs one)");
  Shapes s;
  s.add("wte.weight", {vocab, embed});
  s.add("wpe.weight", {positions, embed});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string block = "h." + std::to_string(i);
    s.weight_bias(block + ".ln_1", {embed}, embed);
    s.weight_bias(block + ".attn.c_attn", {embed, 3 * embed}, 3 * embed);
    s.weight_bias(block + ".attn.c_proj", {embed, embed}, embed);
    s.weight_bias(block + ".ln_2", {embed}, embed);
    if (cross) {
      s.weight_bias(block + ".crossattention.c_attn", {embed, 2 * embed}, 2 * embed);
      s.weight_bias(block + ".crossattention.q_attn", {embed, embed}, embed);
      s.weight_bias(block + ".crossattention.c_proj", {embed, embed}, embed);
      s.weight_bias(block + ".ln_cross_attn", {embed}, embed);
    }
    s.weight_bias(block + ".mlp.c_fc", {embed, inner}, inner);
    s.weight_bias(block + ".mlp.c_proj", {inner, embed}, embed);
  }
  s.weight_bias("ln_f", {embed}, embed);
  return s.take();
}

// The length of the rotary embedding's inv_freq buffer: one frequency per
// pair of rotated dimensions. The default RoPE rotates the whole head; the
// scaled variants rotate int(head_dim * partial_rotary_factor) dimensions.
int64_t rotary_frequencies(const Config& c, int64_t head_dim) {
  const json* rope = c.object({"rope_parameters", "rope_scaling"});
  std::string type = "default";
  if (rope) {
    for (const char* key : {"rope_type", "type"}) {
      if (rope->contains(key) && (*rope)[key].is_string()) {
        type = (*rope)[key].get<std::string>();
        break;
      }
    }
  }
  if (type == "default") return (head_dim + 1) / 2;
  static const std::vector<std::string> kScaled = {"linear", "dynamic", "yarn", "longrope", "llama3"};
  ACCEL_CHECK_ARG(std::find(kScaled.begin(), kScaled.end(), type) != kScaled.end(), c.source, ": rope type '", type,
                  "' is not supported from a config alone; expected default or one of ", join(kScaled));
  double factor = 1.0;
  const json* partial = rope && rope->contains("partial_rotary_factor") ? &(*rope)["partial_rotary_factor"]
                                                                        : c.find({"partial_rotary_factor"});
  if (partial) {
    ACCEL_CHECK_ARG(partial->is_number() && partial->get<double>() > 0 && partial->get<double>() <= 1, c.source,
                    ": \"partial_rotary_factor\" is ", json_excerpt(*partial), ", expected a number in (0, 1]");
    factor = partial->get<double>();
  }
  const auto dim = static_cast<int64_t>(static_cast<double>(head_dim) * factor);  // Python's int(): truncates
  return (dim + 1) / 2;
}

// transformers' LlamaModel (embed_tokens, layers.<i>, norm, rotary_emb);
// Linear weights are stored [out, in].
TensorShapes llama(const Config& c) {
  const int64_t vocab = c.size({"vocab_size"}, 32000);
  const int64_t hidden = c.size({"hidden_size"}, 4096);
  const int64_t intermediate = c.size({"intermediate_size"}, 11008);
  const int64_t layers = c.size({"num_hidden_layers"}, 32, 0);
  const int64_t heads = c.size({"num_attention_heads"}, 32);
  const int64_t kv_heads = c.size({"num_key_value_heads"}, heads);
  ACCEL_CHECK_ARG(hidden / heads >= 1 || c.find({"head_dim"}), c.source, ": hidden_size ", hidden,
                  " is smaller than num_attention_heads ", heads, " and no head_dim is given");
  const int64_t head_dim = c.size({"head_dim"}, hidden / heads);
  const bool attention_bias = c.flag("attention_bias", false);
  const bool mlp_bias = c.flag("mlp_bias", false);
  Shapes s;
  s.add("embed_tokens.weight", {vocab, hidden});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string layer = "layers." + std::to_string(i);
    s.weight_bias(layer + ".self_attn.q_proj", {heads * head_dim, hidden}, heads * head_dim, attention_bias);
    s.weight_bias(layer + ".self_attn.k_proj", {kv_heads * head_dim, hidden}, kv_heads * head_dim, attention_bias);
    s.weight_bias(layer + ".self_attn.v_proj", {kv_heads * head_dim, hidden}, kv_heads * head_dim, attention_bias);
    s.weight_bias(layer + ".self_attn.o_proj", {hidden, heads * head_dim}, hidden, attention_bias);
    s.weight_bias(layer + ".mlp.gate_proj", {intermediate, hidden}, intermediate, mlp_bias);
    s.weight_bias(layer + ".mlp.up_proj", {intermediate, hidden}, intermediate, mlp_bias);
    s.weight_bias(layer + ".mlp.down_proj", {hidden, intermediate}, hidden, mlp_bias);
    s.add(layer + ".input_layernorm.weight", {hidden});
    s.add(layer + ".post_attention_layernorm.weight", {hidden});
  }
  s.add("norm.weight", {hidden});
  // Buffers, not in a checkpoint (non-persistent) but in the module, which
  // is what Accelerate measures.
  const int64_t frequencies = rotary_frequencies(c, head_dim);
  s.add("rotary_emb.inv_freq", {frequencies});
  s.add("rotary_emb.original_inv_freq", {frequencies});
  return s.take();
}

using Builder = std::function<TensorShapes(const Config&)>;

const std::map<std::string, Builder>& builders() {
  static const std::map<std::string, Builder> kBuilders = {{"gpt2", gpt2}, {"llama", llama}};
  return kBuilders;
}

}  // namespace

std::vector<std::string> config_model_types() {
  std::vector<std::string> out;
  for (const auto& [type, builder] : builders()) out.push_back(type);
  return out;
}

TensorShapes config_tensor_shapes(const std::filesystem::path& config_json) {
  Config c;
  c.source = "'" + config_json.string() + "'";
  std::ifstream in(config_json, std::ios::binary);
  ACCEL_CHECK(in && std::filesystem::is_regular_file(config_json), "cannot read model config ", c.source,
              ": no such file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    c.root = parse_user_json(text);
  } catch (const std::invalid_argument& e) {
    fail(c.source, ": ", e.what());
  }
  ACCEL_CHECK_ARG(c.root.is_object(), c.source, ": expected a JSON object (a Hugging Face config.json)");
  const std::string type = string_member(c.root, "model_type");
  ACCEL_CHECK_ARG(!type.empty(), c.source, ": no \"model_type\"; expected a Hugging Face config.json naming one of ",
                  join(config_model_types()));
  auto it = builders().find(type);
  ACCEL_CHECK_ARG(it != builders().end(), c.source, ": model_type '", type,
                  "' is not supported from a config alone; expected one of ", join(config_model_types()),
                  " (a folder with the model's safetensors weights works for any model)");
  return it->second(c);
}

}  // namespace accel
