#include "hf_checkpoint.h"

#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/model_files.h"
#include "accel/util/check.h"
#include "accel/util/excerpt.h"

namespace gpt2 {

namespace fs = std::filesystem;
namespace st = accel::safetensors;

namespace {

// The layers Hugging Face stores as Conv1D ([in, out]; see the header).
bool is_conv1d_weight(const std::string& name) {
  return name.ends_with(".attn.c_attn.weight") || name.ends_with(".attn.c_proj.weight") ||
         name.ends_with(".mlp.c_fc.weight") || name.ends_with(".mlp.c_proj.weight");
}

// The causal-mask buffers of older files (not weights):
// transformer.h.<digits>.attn.bias or .masked_bias. Matched by hand, as
// std::regex recurses per character and a name can be any length.
bool is_mask_buffer(const std::string& name) {
  const std::string prefix = "transformer.h.";
  if (!name.starts_with(prefix)) return false;
  size_t i = prefix.size();
  const size_t digits = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  if (i == digits) return false;
  const std::string_view rest = std::string_view(name).substr(i);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

// Files saved from GPT2Model name tensors without the LM model's prefix.
std::string model_name(const std::string& file_name) {
  if (file_name.starts_with("transformer.") || file_name.starts_with("lm_head.")) return file_name;
  return "transformer." + file_name;
}

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

// A tensor of the checkpoint bound for one model tensor.
struct Source {
  std::string file_name;  // its name in the file
  fs::path file;
  torch::Tensor tensor;  // in the model's layout (Conv1D weights transposed)
};

std::string describe(const GPT2Options& o) {
  return "n_layer " + std::to_string(o.n_layer()) + ", n_embd " + std::to_string(o.n_embd()) + ", n_positions " +
         std::to_string(o.n_positions()) + ", vocab_size " + std::to_string(o.vocab_size());
}

std::string where(const Source& s) { return s.file.string() + ": tensor \"" + accel::excerpt(s.file_name) + "\""; }

}  // namespace

void load_hf_weights(GPT2Impl& model, const fs::path& dir) {
  const auto checkpoint = accel::find_checkpoint_files(dir);
  std::map<fs::path, st::File> files;
  auto params = model.named_parameters();
  std::map<std::string, Source> sources;  // by model name
  std::optional<Source> lm_head;
  std::vector<std::string> unexpected;

  // Pass one: find, transpose and check every tensor; nothing is copied yet.
  for (const auto& [file_name, path] : checkpoint.weight_map) {
    const std::string name = model_name(file_name);
    if (is_mask_buffer(name)) continue;
    auto it = files.find(path);
    if (it == files.end()) it = files.emplace(path, st::File(path)).first;
    Source source{file_name, path, it->second.get(file_name)};
    ACCEL_CHECK(c10::isFloatingType(source.tensor.scalar_type()), where(source), " has dtype ",
                c10::toString(source.tensor.scalar_type()), ", expected a floating-point dtype");
    if (name == "lm_head.weight") {
      lm_head = std::move(source);
      continue;
    }
    const torch::Tensor* target = params.find(name);
    if (!target) {
      unexpected.push_back(where(source));
      continue;
    }
    const bool conv1d = is_conv1d_weight(name);
    if (conv1d) source.tensor = source.tensor.t();
    if (source.tensor.sizes() != target->sizes()) {
      accel::fail<std::runtime_error>(where(source), " has shape ", shape_text(it->second.info(file_name).shape),
                                      ", but the model (", describe(model.options()), ") expects ",
                                      conv1d ? shape_text(target->t().sizes()) +
                                                   " (Conv1D [in, out], transposed into Linear's [out, in] " +
                                                   shape_text(target->sizes()) + ")"
                                             : shape_text(target->sizes()));
    }
    const bool first = sources.emplace(name, source).second;
    ACCEL_CHECK(first, where(source), " names the same weight as \"", sources.at(name).file_name, "\" in ",
                sources.at(name).file.string(), ": expected one of them");
  }
  if (!unexpected.empty()) {
    std::string text;
    for (size_t i = 0; i < unexpected.size() && i < 20; ++i) text += "\n  " + unexpected[i];
    if (unexpected.size() > 20) text += "\n  ... (" + std::to_string(unexpected.size()) + " in all)";
    accel::fail<std::runtime_error>("the GPT-2 checkpoint in ", dir.string(),
                                    " holds tensors this model does not have:", text);
  }
  std::string missing;
  for (const auto& item : params)
    if (!sources.count(item.key())) missing += "\n  " + item.key();
  ACCEL_CHECK(missing.empty(), "the GPT-2 checkpoint in ", dir.string(), " lacks tensors the model needs:", missing);
  if (lm_head) {
    const auto& wte = sources.at("transformer.wte.weight");
    ACCEL_CHECK(lm_head->tensor.sizes() == wte.tensor.sizes() &&
                    torch::equal(lm_head->tensor.to(torch::kFloat), wte.tensor.to(torch::kFloat)),
                where(*lm_head), " differs from ", where(wte),
                ": this model ties the output projection to the token embedding, "
                "expected them equal (or lm_head.weight absent)");
  }

  // Pass two: copy (casting from the file's dtype, to wherever the model is).
  torch::NoGradGuard no_grad;
  for (auto& item : params) item.value().copy_(sources.at(item.key()).tensor);
}

GPT2 from_pretrained(const fs::path& dir, double dropout) {
  GPT2 model(read_hf_config(dir / "config.json").dropout(dropout));
  load_hf_weights(*model, dir);
  return model;
}

namespace {

// One weight in Hugging Face's layout (Conv1D weights transposed), fp32 on the CPU.
torch::Tensor hf_layout(const std::string& name, const torch::Tensor& value) {
  auto t = value.detach().to(torch::kCPU, torch::kFloat);
  return is_conv1d_weight(name) ? t.t().contiguous() : t;
}

void write_pretrained(const GPT2Options& options, const st::NamedTensors& weights, const fs::path& dir,
                      const std::string& max_shard_size) {
  fs::create_directories(dir);
  accel::write_model_files(weights, dir, accel::SaveModelOptions().max_shard_size(max_shard_size));
  // config.json last: a folder with a config but no weights is never seen.
  accel::AtomicFile config(dir / "config.json");
  config.write(hf_config_json(options));
  config.commit();
}

}  // namespace

st::NamedTensors hf_state(const GPT2Impl& model) {
  st::NamedTensors out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), hf_layout(item.key(), item.value()));
  return out;
}

st::NamedTensors hf_state(const GPT2Impl& model, const st::NamedTensors& state) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  st::NamedTensors out;
  for (const auto& item : model.named_parameters()) {
    auto it = by_name.find(item.key());
    ACCEL_CHECK(it != by_name.end(), "gpt2: the state to save has no '", item.key(), "'");
    out.emplace_back(item.key(), hf_layout(item.key(), it->second));
  }
  return out;
}

void save_pretrained(const GPT2Impl& model, const fs::path& dir, const std::string& max_shard_size) {
  write_pretrained(model.options(), hf_state(model), dir, max_shard_size);
}

void save_pretrained(const GPT2Impl& model, const st::NamedTensors& state, const fs::path& dir,
                     const std::string& max_shard_size) {
  write_pretrained(model.options(), hf_state(model, state), dir, max_shard_size);
}

}  // namespace gpt2
