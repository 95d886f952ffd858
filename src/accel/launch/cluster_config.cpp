#include "accel/launch/cluster_config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <yaml-cpp/yaml.h>

#include "accel/checkpoint/atomic_file.h"
#include "accel/util/check.h"
#include "accel/util/excerpt.h"
#include "accel/util/strings.h"

namespace accel::launch {
namespace {

// What each key may hold. `text` takes any scalar (Accelerate does not
// check those either); `section` holds a map of its own keys.
enum class Type { boolean, integer, number, text, choice, list, section };

constexpr long long kMaxInt = std::numeric_limits<int>::max();

struct Spec {
  Type type;
  std::vector<std::string> choices{};
  Value fallback{};         // ClusterConfig's default (None: no default)
  bool exact_case = false;  // choices compared as written (enums Accelerate parses strictly)
  // An integer's range: counts, ranks and ports end up in an int (or a port).
  long long min = std::numeric_limits<long long>::min();
  long long max = std::numeric_limits<long long>::max();
};

Value B(bool b) { return Value::of_bool(b); }
Value I(long long i) { return Value::of_int(i); }
Value S(const char* s) { return Value::of_text(s); }

const std::vector<std::string> kDistributedTypes = {
    "NO",        "MULTI_CPU", "MULTI_GPU", "MULTI_NPU", "MULTI_MLU",   "MULTI_SDAA", "MULTI_MUSA",
    "MULTI_XPU", "DEEPSPEED", "FSDP",      "XLA",       "MEGATRON_LM", "MULTI_HPU",  "MULTI_NEURON"};
const std::vector<std::string> kPrecisions = {"no", "fp16", "bf16", "fp8"};
const std::vector<std::string> kDynamoBackends = {
    "NO",          "EAGER",  "AOT_EAGER", "INDUCTOR", "AOT_TS_NVFUSER",          "NVPRIMS_NVFUSER",     "CUDAGRAPHS",
    "OFI",         "FX2TRT", "ONNXRT",    "TENSORRT", "AOT_TORCHXLA_TRACE_ONCE", "TORCHXLA_TRACE_ONCE", "TVM",
    "HPU_BACKEND", "NEURON"};
const std::vector<std::string> kOffloadDevices = {"none", "cpu", "nvme"};

// ClusterConfig's fields (accelerate/commands/config/config_args.py).
const std::map<std::string, Spec>& top_specs() {
  static const std::map<std::string, Spec> specs = {
      {"compute_environment", {Type::choice, {"LOCAL_MACHINE", "AMAZON_SAGEMAKER"}, S("LOCAL_MACHINE"), true}},
      {"distributed_type", {Type::choice, kDistributedTypes, {}, true}},
      {"mixed_precision", {Type::choice, kPrecisions}},
      {"use_cpu", {Type::boolean, {}, B(false)}},
      {"debug", {Type::boolean, {}, B(false)}},
      // -1: not set (Accelerate's default), which `accel launch` then refuses.
      {"num_processes", {Type::integer, {}, I(-1), false, -1, kMaxInt}},
      {"machine_rank", {Type::integer, {}, I(0), false, 0, kMaxInt}},
      {"num_machines", {Type::integer, {}, I(1), false, 1, kMaxInt}},
      {"gpu_ids", {Type::text}},
      {"main_process_ip", {Type::text}},
      {"main_process_port", {Type::integer, {}, {}, false, 0, 65535}},
      {"rdzv_backend", {Type::text, {}, S("static")}},
      {"same_network", {Type::boolean, {}, B(false)}},
      {"main_training_function", {Type::text, {}, S("main")}},
      {"enable_cpu_affinity", {Type::boolean, {}, B(false)}},
      {"fp8_config", {Type::section}},
      {"deepspeed_config", {Type::section}},
      {"fsdp_config", {Type::section}},
      {"parallelism_config", {Type::section}},
      {"megatron_lm_config", {Type::section}},
      {"mpirun_config", {Type::section}},
      {"dynamo_config", {Type::section}},
      // `accelerate config` writes downcast_bf16: 'no' (a string) for non-TPU machines.
      {"downcast_bf16", {Type::text, {}, B(false)}},
      {"tpu_name", {Type::text}},
      {"tpu_zone", {Type::text}},
      {"tpu_use_cluster", {Type::boolean, {}, B(false)}},
      {"tpu_use_sudo", {Type::boolean, {}, B(false)}},
      {"command_file", {Type::text}},
      {"commands", {Type::list}},
      {"tpu_vm", {Type::list}},
      {"tpu_env", {Type::list}},
  };
  return specs;
}

// Keys of the sections accel reads. The other sections (fp8, megatron_lm,
// parallelism, mpirun) are kept as they are: accel does not use them.
const std::map<std::string, std::map<std::string, Spec>>& section_specs() {
  static const std::map<std::string, std::map<std::string, Spec>> specs = {
      {"fsdp_config",
       {
           {"fsdp_version", {Type::choice, {"1", "2"}}},
           {"fsdp_sharding_strategy",
            {Type::choice,
             {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2", "1", "2", "3", "4",
              "5"}}},
           // A bool with FSDP2, a sharding strategy name with FSDP1.
           {"fsdp_reshard_after_forward",
            {Type::choice,
             {"true", "false", "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2"}}},
           {"fsdp_offload_params", {Type::boolean}},
           {"fsdp_min_num_params", {Type::integer, {}, {}, false, 0}},
           {"fsdp_auto_wrap_policy", {Type::choice, {"TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"}}},
           {"fsdp_transformer_layer_cls_to_wrap", {Type::text}},
           {"fsdp_backward_prefetch", {Type::choice, {"BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"}}},
           {"fsdp_backward_prefetch_policy", {Type::choice, {"BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"}}},
           {"fsdp_state_dict_type", {Type::choice, {"FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"}}},
           {"fsdp_forward_prefetch", {Type::boolean}},
           {"fsdp_use_orig_params", {Type::boolean}},
           {"fsdp_cpu_ram_efficient_loading", {Type::boolean}},
           {"fsdp_sync_module_states", {Type::boolean}},
           {"fsdp_activation_checkpointing", {Type::boolean}},
           {"fsdp_activation_checkpointing_offload", {Type::boolean}},
           {"fsdp_ignored_modules", {Type::text}},
       }},
      {"deepspeed_config",
       {
           {"deepspeed_config_file", {Type::text}},
           {"zero_stage", {Type::choice, {"0", "1", "2", "3"}}},
           {"offload_optimizer_device", {Type::choice, kOffloadDevices}},
           {"offload_param_device", {Type::choice, kOffloadDevices}},
           {"offload_optimizer_nvme_path", {Type::text}},
           {"offload_param_nvme_path", {Type::text}},
           {"gradient_accumulation_steps", {Type::integer, {}, {}, false, 1, kMaxInt}},
           {"gradient_clipping", {Type::number}},
           {"zero3_init_flag", {Type::boolean}},
           {"zero3_save_16bit_model", {Type::boolean}},
           {"deepspeed_hostfile", {Type::text}},
           {"deepspeed_exclusion_filter", {Type::text}},
           {"deepspeed_inclusion_filter", {Type::text}},
           {"deepspeed_multinode_launcher",
            {Type::choice, {"pdsh", "standard", "openmpi", "mvapich", "mpich", "nossh", "slurm"}}},
           {"deepspeed_moe_layer_cls_names", {Type::text}},
       }},
      {"dynamo_config",
       {
           {"dynamo_backend", {Type::choice, kDynamoBackends}},
           {"dynamo_mode", {Type::choice, {"default", "reduce-overhead", "max-autotune"}}},
           {"dynamo_use_fullgraph", {Type::boolean}},
           {"dynamo_use_dynamic", {Type::boolean}},
           {"dynamo_use_regional_compilation", {Type::boolean}},
       }},
  };
  return specs;
}

std::vector<std::string> known_keys(const std::map<std::string, Spec>& specs) {
  std::vector<std::string> keys;
  for (auto& [k, _] : specs) keys.push_back(k);
  return keys;
}

// What `spec` expected in place of `value` (not None); nullopt: `value` fits.
std::optional<std::string> expected_instead(const Spec& spec, const Value& value) {
  switch (spec.type) {
    case Type::boolean:
      if (value.kind != Value::Kind::boolean) return "true or false";
      break;
    case Type::integer:
      if (value.kind != Value::Kind::integer) return "an integer";
      if (value.integer < spec.min || value.integer > spec.max)
        return "an integer from " + std::to_string(spec.min) + " to " + std::to_string(spec.max);
      break;
    case Type::number:
      if (value.kind != Value::Kind::integer && value.kind != Value::Kind::number) return "a number";
      break;
    case Type::text:
      if (value.kind == Value::Kind::list) return "a single value";
      break;
    case Type::list:
      if (value.kind != Value::Kind::list) return "a list";
      break;
    case Type::choice: {
      const std::string s = value.str();
      bool ok = std::any_of(spec.choices.begin(), spec.choices.end(),
                            [&](const std::string& c) { return spec.exact_case ? c == s : lower(c) == lower(s); });
      if (!ok || value.kind == Value::Kind::list) return "one of " + join(spec.choices);
      break;
    }
    case Type::section: return "a mapping of keys to values";
  }
  return std::nullopt;
}

// Checks `value` against `spec`; `where` names the key in the message.
void check(const std::string& where, const Spec& spec, const Value& value) {
  if (value.is_none()) return;  // every ClusterConfig field is Optional in practice
  const auto expected = expected_instead(spec, value);
  ACCEL_CHECK_ARG(!expected, "config key '", excerpt(where), "': expected ", *expected, ", got '", excerpt(value.str()),
                  "' (", value.type_name(), ")");
}

std::string section_key_name(const std::string& section, const std::string& key) {
  // Accelerate's launcher adds the section's prefix to keys written without it.
  if (section == "fsdp_config" && key.rfind("fsdp_", 0) != 0) return "fsdp_" + key;
  if (section == "dynamo_config" && key.rfind("dynamo_", 0) != 0) return "dynamo_" + key;
  return key;
}

const Spec* find_spec(const std::string& section, const std::string& key) {
  if (section.empty()) {
    auto it = top_specs().find(key);
    return it == top_specs().end() ? nullptr : &it->second;
  }
  auto sec = section_specs().find(section);
  if (sec == section_specs().end()) return nullptr;
  auto it = sec->second.find(section_key_name(section, key));
  return it == sec->second.end() ? nullptr : &it->second;
}

// YAML 1.1 reads a bare NO / off / yes as a boolean, which PyYAML then
// refuses as a distributed_type; accel reads what was meant: the word.
Value as_written(const Spec* spec, const YAML::Node& node, Value v) {
  if (spec && spec->type == Type::choice && v.kind == Value::Kind::boolean && node.IsScalar() && node.Tag() != "!") {
    const std::string word = node.Scalar();
    bool listed = std::any_of(spec->choices.begin(), spec->choices.end(),
                              [&](const std::string& c) { return lower(c) == lower(word); });
    bool bool_listed = std::any_of(spec->choices.begin(), spec->choices.end(),
                                   [&](const std::string& c) { return c == "true" || c == "false"; });
    if (listed && !bool_listed) return Value::of_text(word);
  }
  return v;
}

void check_section_key(const std::string& section, const std::string& key, const Value& value) {
  auto it = section_specs().find(section);
  if (it == section_specs().end()) return;
  const auto& specs = it->second;
  auto s = specs.find(section_key_name(section, key));
  ACCEL_CHECK_ARG(s != specs.end(), "unknown config key '", section, ".", excerpt(key), "': expected one of ",
                  join(known_keys(specs)));
  check(section + "." + key, s->second, value);
}

Value read_scalar(const YAML::Node& node) {
  if (node.IsNull()) return {};
  // A quoted scalar (and every JSON string) is text; a plain one is resolved like PyYAML.
  if (node.Tag() == "!") return Value::of_text(node.Scalar());
  return resolve_plain_scalar(node.Scalar());
}

Value read_value(const std::string& where, const YAML::Node& node) {
  if (node.IsSequence()) {
    std::vector<std::string> items;
    for (const auto& item : node) {
      ACCEL_CHECK_ARG(item.IsScalar() || item.IsNull(), "config key '", excerpt(where),
                      "': expected a list of single values");
      items.push_back(read_scalar(item).str());
    }
    return Value::of_list(std::move(items));
  }
  ACCEL_CHECK_ARG(!node.IsMap(), "config key '", excerpt(where), "': expected a single value, got a mapping");
  return read_scalar(node);
}

// YAML text for a scalar, quoted where PyYAML's safe_dump would quote it.
std::string yaml_scalar(const Value& v) {
  switch (v.kind) {
    case Value::Kind::none: return "null";
    case Value::Kind::boolean: return v.boolean ? "true" : "false";
    case Value::Kind::integer: return std::to_string(v.integer);
    case Value::Kind::number: {
      std::string s = python_float(v.number);
      if (s == "inf") return ".inf";
      if (s == "-inf") return "-.inf";
      if (s == "nan") return ".nan";
      return s;
    }
    case Value::Kind::list: return "";
    case Value::Kind::text: break;
  }
  const std::string& t = v.text;
  // Control characters (a newline, a NUL, a tab) survive only in a
  // double-quoted scalar, escaped, as PyYAML writes them: in a plain or
  // single-quoted one they are folded or refused when read back.
  const bool control = std::any_of(t.begin(), t.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (control) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string q = "\"";
    for (char c : t) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        q += '\\';
        q += c;
      } else if (u < 0x20 || u == 0x7f) {
        q += "\\x";
        q += kHex[u >> 4];
        q += kHex[u & 0xf];
      } else {
        q += c;
      }
    }
    return q + "\"";
  }
  bool quote = t.empty() || resolve_plain_scalar(t).kind != Value::Kind::text || t.front() == ' ' || t.back() == ' ' ||
               std::string("-?:,[]{}#&*!|>'\"%@`").find(t.front()) != std::string::npos ||
               t.find(": ") != std::string::npos || t.find(" #") != std::string::npos ||
               t.find('\n') != std::string::npos || t.back() == ':';
  if (!quote) return t;
  std::string q = "'";
  for (char c : t) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string default_config_path() {
  namespace fs = std::filesystem;
  const char* hf = std::getenv("HF_HOME");
  fs::path base;
  if (hf && *hf) {
    base = hf;
  } else {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) {
      base = fs::path(xdg) / "huggingface";
    } else {
      const char* home = std::getenv("HOME");
      base = fs::path(home && *home ? home : ".") / ".cache" / "huggingface";
    }
  }
  return (base / "accelerate" / "default_config.yaml").string();
}

std::vector<std::string> allowed_values(const std::string& key) {
  auto dot = key.find('.');
  if (dot == std::string::npos) {
    auto it = top_specs().find(key);
    return it == top_specs().end() ? std::vector<std::string>{} : it->second.choices;
  }
  auto sec = section_specs().find(key.substr(0, dot));
  if (sec == section_specs().end()) return {};
  auto it = sec->second.find(key.substr(dot + 1));
  return it == sec->second.end() ? std::vector<std::string>{} : it->second.choices;
}

ClusterConfig ClusterConfig::load(const std::string& path) {
  std::ifstream f(path);
  ACCEL_CHECK_ARG(f, "config file '", path,
                  "' does not exist or cannot be read; write one with `accel config` or pass --config_file");
  std::stringstream s;
  s << f.rdbuf();
  return parse(s.str(), path);
}

ClusterConfig ClusterConfig::parse(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(source, ": not valid YAML: ", e.what());
  }
  ACCEL_CHECK_ARG(root.IsMap(), source, ": expected a mapping of config keys at the top level");
  ClusterConfig c;
  try {
    std::map<std::string, Value> raw;
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& node = kv.second;
      auto spec = top_specs().find(key);
      if (key == "fp16" || key == "dynamo_backend") {
        raw[key] = read_value(key, node);
        continue;
      }
      ACCEL_CHECK_ARG(spec != top_specs().end(), "unknown config key '", excerpt(key), "': expected one of ",
                      join(known_keys(top_specs())));
      if (spec->second.type == Type::section) {
        if (node.IsNull()) continue;
        ACCEL_CHECK_ARG(node.IsMap(), "config key '", excerpt(key), "': expected a mapping of keys to values");
        for (const auto& item : node) {
          const std::string k = item.first.as<std::string>();
          c.set(key, k, as_written(find_spec(key, k), item.second, read_value(key + "." + k, item.second)));
        }
        continue;
      }
      raw[key] = as_written(&spec->second, node, read_value(key, node));
    }
    // Accelerate's BaseConfig.process_config: legacy keys and missing fields.
    if (!raw.count("compute_environment") || raw["compute_environment"].is_none())
      raw["compute_environment"] = S("LOCAL_MACHINE");
    ACCEL_CHECK_ARG(raw["compute_environment"].str() != "AMAZON_SAGEMAKER",
                    "config key 'compute_environment': AMAZON_SAGEMAKER is not supported by accel; expected "
                    "LOCAL_MACHINE");
    ACCEL_CHECK_ARG(raw.count("distributed_type") && !raw["distributed_type"].is_none(),
                    "config key 'distributed_type' is missing: expected one of ", join(kDistributedTypes));
    if (!raw.count("num_processes") && raw["distributed_type"].str() == "NO") raw["num_processes"] = I(1);
    if (!raw.count("mixed_precision")) {
      bool fp16 = raw.count("fp16") && raw["fp16"].truthy();
      raw["mixed_precision"] = fp16 ? S("fp16") : Value{};
    }
    raw.erase("fp16");
    if (raw.count("dynamo_backend")) {
      Value backend = raw["dynamo_backend"];
      raw.erase("dynamo_backend");
      if (backend.str() != "NO") c.set("dynamo_config", "dynamo_backend", backend);
    }
    for (auto& [k, v] : raw) c.set(k, v);
    c.fill_defaults();
  } catch (const std::invalid_argument& e) {
    fail(source, ": ", e.what());
  } catch (const YAML::Exception& e) {
    fail(source, ": ", e.what());
  }
  return c;
}

void ClusterConfig::fill_defaults() {
  for (auto& [key, spec] : top_specs())
    if (!spec.fallback.is_none() && get(key).is_none()) values_[key] = spec.fallback;
}

Value ClusterConfig::get(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? Value{} : it->second;
}

void ClusterConfig::set(const std::string& key, Value value) {
  auto spec = top_specs().find(key);
  ACCEL_CHECK_ARG(spec != top_specs().end(), "unknown config key '", excerpt(key), "': expected one of ",
                  join(known_keys(top_specs())));
  ACCEL_CHECK_ARG(spec->second.type != Type::section, "config key '", excerpt(key),
                  "' is a section: set its keys one by one");
  check(key, spec->second, value);
  if (value.is_none())
    values_.erase(key);
  else
    values_[key] = std::move(value);
}

const Section& ClusterConfig::section(const std::string& name) const {
  static const Section empty;
  auto it = sections_.find(name);
  return it == sections_.end() ? empty : it->second;
}

void ClusterConfig::set(const std::string& section, const std::string& key, Value value) {
  auto spec = top_specs().find(section);
  ACCEL_CHECK_ARG(spec != top_specs().end() && spec->second.type == Type::section, "'", excerpt(section),
                  "' is not a config section: expected fsdp_config, deepspeed_config, dynamo_config, fp8_config, "
                  "megatron_lm_config, parallelism_config or mpirun_config");
  check_section_key(section, key, value);
  if (value.is_none())
    sections_[section].erase(key);
  else
    sections_[section][key] = std::move(value);
  if (sections_[section].empty()) sections_.erase(section);
}

std::string ClusterConfig::to_yaml() const {
  // Keys in sorted order with sections interleaved, as yaml.safe_dump writes them.
  std::map<std::string, std::string> blocks;
  for (auto& [k, v] : values_) {
    if (v.is_none()) continue;
    if (v.kind == Value::Kind::list) {
      std::string b = k + ":";
      if (v.items.empty()) b += " []";
      for (auto& item : v.items) {
        // Items are kept as text (Python's str() of each); one that reads as
        // a number or boolean is written plain, any other as text ("" is '',
        // not null, which would read back as "None").
        const Value typed = resolve_plain_scalar(item);
        const bool plain = typed.kind != Value::Kind::text && typed.kind != Value::Kind::none;
        b += "\n- " + yaml_scalar(plain ? typed : Value::of_text(item));
      }
      blocks[k] = b + "\n";
    } else {
      blocks[k] = k + ": " + yaml_scalar(v) + "\n";
    }
  }
  for (auto& [name, sec] : sections_) {
    if (sec.empty()) continue;
    std::string b = name + ":\n";
    for (auto& [k, v] : sec) {
      if (v.kind == Value::Kind::list) {
        b += "  " + k + ":\n";
        for (auto& item : v.items) b += "  - " + yaml_scalar(Value::of_text(item)) + "\n";
      } else {
        b += "  " + k + ": " + yaml_scalar(v) + "\n";
      }
    }
    blocks[name] = b;
  }
  std::string out;
  for (auto& [_, b] : blocks) out += b;
  return out;
}

void ClusterConfig::save(const std::string& path) const {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  // A temporary of an unpredictable name made with O_EXCL, renamed over the
  // target: a link planted at either name is replaced, never written through.
  try {
    write_file_atomic(p, to_yaml());
  } catch (const std::exception& e) {
    fail<std::runtime_error>("cannot write config file '", path, "': ", e.what());
  }
}

}  // namespace accel::launch
