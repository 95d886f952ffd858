// save_model: the state in Python's order, Hugging Face's shard split, and
// the files written together.
#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/model_files.h"
#include "accel/dist/collectives.h"
#include "accel/dist/logging.h"
#include "accel/state.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

constexpr std::string_view kSuffix = ".safetensors";

std::string weights_stem(const std::string& weights_name) {
  ACCEL_CHECK_ARG(weights_name.size() > kSuffix.size() && weights_name.ends_with(kSuffix) &&
                      weights_name.find('/') == std::string::npos,
                  "weights_name '", weights_name,
                  "' must be a file name ending in .safetensors (e.g. model.safetensors)");
  return weights_name.substr(0, weights_name.size() - kSuffix.size());
}

void collect_state(const torch::nn::Module& module, const std::string& prefix, safetensors::NamedTensors& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/false)) {
    if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  }
  for (const auto& child : module.named_children()) {
    collect_state(*child.value(), prefix + child.key() + ".", out);
  }
}

[[noreturn]] void bad_size(std::string_view size) {
  fail<std::invalid_argument>("size '", size,
                              "' is not a size: use bytes (\"1000\") or digits with a unit, e.g. \"10GB\" (10^9 "
                              "bytes), \"10GiB\" (2^30 bytes), \"500MB\", \"1.5KiB\"");
}

// The names a save uses, derived from the plan alone (every rank can).
SavedModel describe(const ShardPlan& plan, const SaveModelOptions& options) {
  SavedModel saved;
  const int count = static_cast<int>(plan.shards.size());
  for (int i = 0; i < count; ++i) {
    saved.files.push_back(count == 1 ? options.weights_name() : shard_file_name(options.weights_name(), i + 1, count));
  }
  if (count > 1) saved.index_file = index_file_name(options.weights_name());
  saved.total_size = plan.total_size;
  saved.removed_tied = plan.removed_tied;
  return saved;
}

std::string index_json(const ShardPlan& plan, const SavedModel& saved) {
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    for (const auto& [name, t] : plan.shards[i]) weight_map[name] = saved.files[i];
  }
  nlohmann::json index = {{"metadata", {{"total_size", plan.total_size}}}, {"weight_map", weight_map}};
  // What Python writes: json.dumps(index, indent=2, sort_keys=True) + "\n"
  // (nlohmann's objects keep their keys sorted).
  return index.dump(2, ' ', /*ensure_ascii=*/true) + "\n";
}

// Files of an earlier save that the new one does not use.
void remove_stale(const std::filesystem::path& dir, const SavedModel& saved, const std::string& weights_name) {
  const std::regex shard_pattern(
      std::regex_replace(weights_stem(weights_name), std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
      R"(-\d{5}-of-\d{5}\.safetensors)");
  std::vector<std::string> keep = saved.files;
  if (saved.sharded()) keep.push_back(saved.index_file);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    auto name = entry.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
    bool stale = name == weights_name || name == index_file_name(weights_name) || std::regex_match(name, shard_pattern);
    if (stale) std::filesystem::remove(entry.path());
  }
}

}  // namespace

int64_t parse_size(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty()) bad_size(text);

  struct Unit {
    std::string_view name;
    double multiplier;
  };
  static constexpr Unit kUnits[] = {{"TIB", 1099511627776.0},
                                    {"GIB", 1073741824.0},
                                    {"MIB", 1048576.0},
                                    {"KIB", 1024.0},
                                    {"TB", 1e12},
                                    {"GB", 1e9},
                                    {"MB", 1e6},
                                    {"KB", 1e3}};
  double multiplier = 1;
  bool bits = false;
  const std::string upper = accel::upper(std::string(s));
  for (const auto& unit : kUnits) {
    if (upper.size() > unit.name.size() && std::string_view(upper).ends_with(unit.name)) {
      multiplier = unit.multiplier;
      // Accelerate reads "5Gb" (lowercase b, decimal units) as bits.
      bits = unit.name.size() == 2 && s.back() == 'b';
      s.remove_suffix(unit.name.size());
      break;
    }
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  double value = 0;
  auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error != std::errc() || end != s.data() + s.size() || !std::isfinite(value) || value < 0) bad_size(text);
  double bytes = std::floor(value * multiplier);
  if (bytes >= 9.2e18) bad_size(text);
  auto result = static_cast<int64_t>(bytes);
  return bits ? result / 8 : result;
}

SaveModelOptions& SaveModelOptions::max_shard_size(int64_t bytes) {
  ACCEL_CHECK_ARG(bytes >= 0, "max_shard_size must be >= 0 bytes, got ", bytes);
  max_shard_size_ = bytes;
  return *this;
}

safetensors::NamedTensors model_state(const torch::nn::Module& model) {
  safetensors::NamedTensors out;
  collect_state(model, "", out);
  return out;
}

std::string shard_file_name(const std::string& weights_name, int index, int count) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d", index, count);
  return weights_stem(weights_name) + suffix + std::string(kSuffix);
}

std::string index_file_name(const std::string& weights_name) {
  weights_stem(weights_name);  // validates
  return weights_name + ".index.json";
}

ShardPlan plan_shards(const safetensors::NamedTensors& tensors, int64_t max_shard_size) {
  ShardPlan plan;
  std::map<std::string, std::string> first_name_of;  // tie key -> first name
  safetensors::NamedTensors current;
  int64_t current_size = 0;
  for (const auto& [name, t] : tensors) {
    ACCEL_CHECK_ARG(t.defined(), "tensor '", name, "' is undefined");
    if (auto key = detail::tie_key(t)) {
      auto [it, inserted] = first_name_of.emplace(*key, name);
      if (!inserted) {
        plan.removed_tied.push_back(name);
        continue;
      }
    }
    const int64_t size = static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
    plan.total_size += size;
    if (size > max_shard_size) {
      plan.shards.push_back({{name, t}});
      continue;
    }
    if (current_size + size > max_shard_size) {
      plan.shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.emplace_back(name, t);
    current_size += size;
  }
  // An empty state still gets one (empty) file, so that it loads back.
  if (!current.empty() || plan.shards.empty()) plan.shards.push_back(std::move(current));
  return plan;
}

SavedModel write_model_files(const safetensors::NamedTensors& tensors, const std::filesystem::path& dir,
                             const SaveModelOptions& options) {
  ACCEL_CHECK_ARG(
      options.safe_serialization(),
      "save_model: safe_serialization=false would write a pickled pytorch_model.bin, which runs code on load; "
      "accel writes safetensors only");
  ACCEL_CHECK_ARG(!std::filesystem::exists(dir) || std::filesystem::is_directory(dir), "save_model: '", dir.string(),
                  "' should be a directory, not a file");
  ShardPlan plan = plan_shards(tensors, options.max_shard_size());
  SavedModel saved = describe(plan, options);
  if (!saved.removed_tied.empty()) {
    get_logger("accel.checkpoint")
        .warning("Removed shared tensor {" + join(saved.removed_tied) +
                 "} while saving (same tensor as an earlier name); loading fills it through the tie");
  }
  std::filesystem::create_directories(dir);
  TransferProgress progress("save_model", options.progress());
  TransferProgress::expect(plan.total_size);

  // Every file is complete on disk before any is renamed into place, and
  // the index goes last: a reader never finds an index naming missing data.
  std::vector<AtomicFile> pending;
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    pending.emplace_back(dir / saved.files[i]);
    safetensors::write_tensors(pending.back(), plan.shards[i], options.metadata());
    pending.back().close();
  }
  if (saved.sharded()) {
    pending.emplace_back(dir / saved.index_file);
    pending.back().write(index_json(plan, saved));
    pending.back().close();
  }
  for (auto& file : pending) file.commit();
  remove_stale(dir, saved, options.weights_name());
  sync_directory(dir);
  return saved;
}

SavedModel save_model(const safetensors::NamedTensors& tensors, const std::filesystem::path& dir,
                      const SaveModelOptions& options) {
  SavedModel saved;
  if (ProcessState::get().is_main_process()) {
    saved = write_model_files(tensors, dir, options);
  } else {
    saved = describe(plan_shards(tensors, options.max_shard_size()), options);
  }
  wait_for_everyone();
  return saved;
}

SavedModel save_model(const torch::nn::Module& model, const std::filesystem::path& dir,
                      const SaveModelOptions& options) {
  return save_model(model_state(model), dir, options);
}

}  // namespace accel
