#include "config.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"
#include "accel/util/excerpt.h"
#include "accel/util/format.h"
#include "accel/util/json_depth.h"

namespace gpt2 {

using nlohmann::json;

GPT2Options named_config(const std::string& name) {
  if (name == "124M") return GPT2Options().n_layer(12).n_head(12).n_embd(768);
  if (name == "350M") return GPT2Options().n_layer(24).n_head(16).n_embd(1024);
  if (name == "tiny") return GPT2Options().n_layer(2).n_head(4).n_embd(64).n_positions(128).vocab_size(512);
  accel::fail<std::invalid_argument>("unknown GPT-2 configuration '", name, "': expected 124M, 350M or tiny");
}

namespace {

void check_positive(const char* name, int64_t value) {
  ACCEL_CHECK_ARG(value >= 1, "GPT2Options: ", name, " = ", value, ", expected at least 1");
}

}  // namespace

void check(const GPT2Options& o) {
  check_positive("n_layer", o.n_layer());
  check_positive("n_head", o.n_head());
  check_positive("n_embd", o.n_embd());
  check_positive("n_positions", o.n_positions());
  check_positive("vocab_size", o.vocab_size());
  ACCEL_CHECK_ARG(o.n_embd() % o.n_head() == 0, "GPT2Options: n_embd = ", o.n_embd(),
                  " is not divisible by n_head = ", o.n_head());
  ACCEL_CHECK_ARG(o.layer_norm_epsilon() > 0,
                  "GPT2Options: layer_norm_epsilon = ", std::to_string(o.layer_norm_epsilon()), ", expected > 0");
  ACCEL_CHECK_ARG(o.dropout() >= 0 && o.dropout() < 1, "GPT2Options: dropout = ", std::to_string(o.dropout()),
                  ", expected in [0, 1)");
  ACCEL_CHECK_ARG(o.initializer_range() > 0, "GPT2Options: initializer_range = ", std::to_string(o.initializer_range()),
                  ", expected > 0");
  // The model must fit this machine before it is built: a config asking for
  // 10^12 tokens or 10^9 layers is refused by name, not left to fail inside
  // the allocator (or to grow until the machine swaps).
  const double bytes = model_bytes(o), memory = physical_memory_bytes();
  ACCEL_CHECK_ARG(!(bytes > memory), "GPT2Options: n_layer = ", o.n_layer(), ", n_embd = ", o.n_embd(),
                  ", vocab_size = ", o.vocab_size(), ", n_positions = ", o.n_positions(), " make a model of ",
                  accel::format_double(bytes / 1e9), " GB, more than this machine's ",
                  accel::format_double(memory / 1e9), " GB of memory");
}

double model_bytes(const GPT2Options& o) {
  // In double, so that no product overflows: an estimate is all a limit needs.
  const double e = static_cast<double>(o.n_embd()), layers = static_cast<double>(o.n_layer());
  const double params = static_cast<double>(o.vocab_size()) * e + static_cast<double>(o.n_positions()) * e +
                        layers * (12 * e * e + 13 * e) + 2 * e;
  // Each block is a tree of ~10 LibTorch modules, a few KiB of objects of its own.
  constexpr double kBlockObjectBytes = 16 * 1024;
  return params * 4 + layers * kBlockObjectBytes;
}

double physical_memory_bytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

namespace {

// Reads config.json values with the file and key in every error.
class ConfigReader {
 public:
  ConfigReader(const std::filesystem::path& path, json doc) : path_(path), doc_(std::move(doc)) {}

  /// Refuses the value of `key`: the file, the key, then the parts of the problem.
  template <typename... Parts>
  [[noreturn]] void reject(const std::string& key, const Parts&... what) const {
    accel::fail<std::runtime_error>(path_.string(), ": \"", key, "\" ", what...);
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    auto it = doc_.find(key);
    if (it == doc_.end()) return fallback;
    if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX))
      reject(key, "is ", quote(*it), ", expected an integer");
    return it->get<int64_t>();
  }
  double number(const std::string& key, double fallback) const {
    auto it = doc_.find(key);
    if (it == doc_.end()) return fallback;
    if (!it->is_number()) reject(key, "is ", quote(*it), ", expected a number");
    return it->get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    auto it = doc_.find(key);
    if (it == doc_.end()) return fallback;
    if (!it->is_boolean()) reject(key, "is ", quote(*it), ", expected true or false");
    return it->get<bool>();
  }
  // A setting this model implements only at one value (GPT-2's own).
  void require(const std::string& key, const json& supported, const std::string& why) const {
    auto it = doc_.find(key);
    if (it != doc_.end() && *it != supported)
      reject(key, "is ", quote(*it), ", but this model supports only ", supported.dump(), " (", why, ")");
  }
  const json& doc() const { return doc_; }
  // A value as messages quote it: a short prefix of its JSON.
  static std::string quote(const json& value) {
    return accel::excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace));
  }

 private:
  std::filesystem::path path_;
  json doc_;
};

}  // namespace

GPT2Options read_hf_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  ACCEL_CHECK(in, "cannot open ", path.string(), ": expected a Hugging Face GPT-2 config.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json doc;
  try {
    accel::check_json_depth(text);  // values are compared and quoted below, recursively
    doc = json::parse(text);
  } catch (const std::invalid_argument& e) {
    accel::fail<std::runtime_error>(path.string(), ": ", e.what());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 9e952
    accel::fail<std::runtime_error>(path.string(), " is not valid JSON: ", accel::excerpt(e.what(), 160));
  }
  ACCEL_CHECK(doc.is_object(), path.string(), ": expected a JSON object, found ", doc.type_name());
  ConfigReader r(path, std::move(doc));
  if (auto it = r.doc().find("model_type"); it != r.doc().end() && *it != "gpt2")
    r.reject("model_type", "is ", ConfigReader::quote(*it), ", expected \"gpt2\"");

  const GPT2Options defaults;  // GPT2Config's defaults, as transformers fills missing keys
  auto options = GPT2Options()
                     .n_layer(r.integer("n_layer", defaults.n_layer()))
                     .n_head(r.integer("n_head", defaults.n_head()))
                     .n_embd(r.integer("n_embd", defaults.n_embd()))
                     .n_positions(r.integer("n_positions", defaults.n_positions()))
                     .vocab_size(r.integer("vocab_size", defaults.vocab_size()))
                     .layer_norm_epsilon(r.number("layer_norm_epsilon", defaults.layer_norm_epsilon()))
                     .initializer_range(r.number("initializer_range", defaults.initializer_range()));
  try {
    check(options);
  } catch (const std::invalid_argument& e) {
    accel::fail<std::runtime_error>(path.string(), ": ", e.what());
  }

  r.require("activation_function", "gelu_new", "GELU with the tanh approximation");
  if (auto it = r.doc().find("n_inner"); it != r.doc().end() && !it->is_null() && *it != 4 * options.n_embd())
    r.reject("n_inner", "is ", ConfigReader::quote(*it),
             ", but this model's MLP is 4 * n_embd = ", 4 * options.n_embd());
  r.require("add_cross_attention", false, "a decoder without an encoder");
  r.require("scale_attn_weights", true, "attention scaled by 1/sqrt(head size)");
  r.require("scale_attn_by_inverse_layer_idx", false, "the same attention scale in every layer");
  r.require("tie_word_embeddings", true, "the output projection is the token embedding");
  // reorder_and_upcast_attn changes only the precision of the attention
  // scores under autocast, not the function, so either value loads.
  r.boolean("reorder_and_upcast_attn", false);
  return options;
}

std::string hf_config_json(const GPT2Options& o) {
  check(o);
  // GPT-2's end-of-text token, when the vocabulary holds it (transformers
  // warns about a token id outside the vocabulary).
  const json eos = o.vocab_size() > 50256 ? json(50256) : json(nullptr);
  json doc = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"n_layer", o.n_layer()},
      {"n_head", o.n_head()},
      {"n_embd", o.n_embd()},
      {"n_positions", o.n_positions()},
      {"n_inner", nullptr},
      {"vocab_size", o.vocab_size()},
      {"layer_norm_epsilon", o.layer_norm_epsilon()},
      {"initializer_range", o.initializer_range()},
      {"activation_function", "gelu_new"},
      {"resid_pdrop", o.dropout()},
      {"embd_pdrop", o.dropout()},
      {"attn_pdrop", o.dropout()},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"add_cross_attention", false},
      {"tie_word_embeddings", true},
      {"bos_token_id", eos},
      {"eos_token_id", eos},
      {"dtype", "float32"},
  };
  return doc.dump(2) + "\n";
}

}  // namespace gpt2
