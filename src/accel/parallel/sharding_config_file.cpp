#include "accel/parallel/sharding_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include "accel/util/checked_number.h"
#include "accel/util/user_json.h"

namespace accel {
namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string mp_name(MixedPrecision mp) { return to_string(mp); }

// Reads one file's values, naming the file and the key in every error.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const json& value, const std::string& expected) const {
    throw std::invalid_argument(source_ + ": " + key + " = " + json_excerpt(value) + ": expected " + expected);
  }
  [[noreturn]] void fail(const std::string& message) const { throw std::invalid_argument(source_ + ": " + message); }

  static bool is_auto(const json& v) { return v.is_string() && v.get<std::string>() == "auto"; }

  const json* find(const json& object, const std::string& key) const {
    if (!object.is_object()) return nullptr;
    auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  const json* section(const json& root, const std::string& key) const {
    const json* s = find(root, key);
    if (s && !s->is_object()) fail(key, *s, "an object");
    return s;
  }

  int64_t integer(const json& v, const std::string& key, int64_t min) const {
    // JSON writers put big sizes as 5e8: accept a float with an integral value.
    double d = 0;
    if (v.is_number_integer() || v.is_number_unsigned())
      d = static_cast<double>(v.get<int64_t>());
    else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())
      d = v.get<double>();
    else
      fail(key, v, "an integer >= " + std::to_string(min));
    if (d < static_cast<double>(min) || d > 9.2e18) fail(key, v, "an integer >= " + std::to_string(min));
    return static_cast<int64_t>(d);
  }

  double number(const json& v, const std::string& key, double min) const {
    if (!v.is_number() || !(v.get<double>() >= min)) fail(key, v, "a number >= " + number_text(min));
    return v.get<double>();
  }

  bool boolean(const json& v, const std::string& key) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string()) {  // Accelerate compares str(value).lower() with "true"
      const std::string s = lower(v.get<std::string>());
      if (s == "true") return true;
      if (s == "false") return false;
    }
    fail(key, v, "true or false");
  }

  std::string text(const json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, v, "a string");
    return v.get<std::string>();
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// An enabled flag that may be "auto": its value, or nullopt for "auto".
std::optional<bool> enabled_flag(const Reader& r, const json* section, const std::string& name) {
  if (!section) return std::nullopt;  // absent: Accelerate inserts it from the mixed precision
  const json* e = r.find(*section, "enabled");
  if (!e) return false;  // DeepSpeed's default
  if (Reader::is_auto(*e)) return std::nullopt;
  return r.boolean(*e, name + ".enabled");
}

void parse_precision(const Reader& r, const json& root, const ShardingConfigContext& ctx, ShardingConfig& out) {
  const json* fp16 = r.section(root, "fp16");
  const json* bf16 = r.section(root, "bf16");
  std::string bf16_key = "bf16";
  if (const json* old = r.section(root, "bfloat16")) {
    if (bf16) r.fail("both bf16 and bfloat16 sections are given; keep one");
    bf16 = old;
    bf16_key = "bfloat16";
  }
  const auto want = ctx.mixed_precision;
  const auto fp16_set = enabled_flag(r, fp16, "fp16");
  const auto bf16_set = enabled_flag(r, bf16, bf16_key);
  const bool use_fp16 = fp16_set.value_or(want == MixedPrecision::fp16);
  const bool use_bf16 = bf16_set.value_or(want == MixedPrecision::bf16);
  if (want && *want != MixedPrecision::no) {
    const bool is_fp16 = *want == MixedPrecision::fp16;
    const std::string other = is_fp16 ? bf16_key : "fp16";
    if (is_fp16 ? use_bf16 : use_fp16)
      r.fail(other + ".enabled is true but the Accelerator's mixed_precision is '" + mp_name(*want) +
             "': mixed precision cannot be '" + mp_name(*want) + "' when " + other +
             " is enabled in the DeepSpeed config; set it to \"auto\" or make them agree");
    if (!(is_fp16 ? use_fp16 : use_bf16))
      r.fail(std::string(is_fp16 ? "fp16" : bf16_key) + ".enabled is false but the Accelerator's mixed_precision is '" +
             mp_name(*want) + "'; set it to \"auto\" or make them agree");
  }
  if (use_fp16 && use_bf16) r.fail("fp16.enabled and " + bf16_key + ".enabled are both true; enable one");
  if (use_fp16)
    out.mixed_precision = MixedPrecision::fp16;
  else if (use_bf16)
    out.mixed_precision = MixedPrecision::bf16;
  else if (fp16 || bf16 || want)
    out.mixed_precision = MixedPrecision::no;

  if (!use_fp16) return;
  // DeepSpeed's fp16 defaults: dynamic (loss_scale 0), 2^16, window 1000, hysteresis 2, min 1.
  int64_t power = 16, window = 1000, hysteresis = 2;
  double min_scale = 1.0;
  auto scaler = [&] {
    return GradScalerOptions()
        .init_scale(std::ldexp(1.0, static_cast<int>(power)))
        .growth_interval(window)
        .hysteresis(hysteresis)
        .min_scale(min_scale);
  };
  if (!fp16) {  // the section Accelerate inserts for mixed_precision fp16: all defaults
    out.scaler = scaler();
    return;
  }
  auto value = [&](const char* key) { return r.find(*fp16, key); };
  if (const json* v = value("loss_scale")) {
    const double scale = r.number(*v, "fp16.loss_scale", 0);
    if (scale != 0) r.fail("fp16.loss_scale", *v, "0 (dynamic loss scaling); a static loss scale is not supported yet");
  }
  if (const json* v = value("initial_scale_power")) power = r.integer(*v, "fp16.initial_scale_power", 0);
  if (power > 126) r.fail("fp16.initial_scale_power", *value("initial_scale_power"), "an integer in [0, 126]");
  if (const json* v = value("loss_scale_window")) window = r.integer(*v, "fp16.loss_scale_window", 1);
  if (const json* v = value("hysteresis")) hysteresis = r.integer(*v, "fp16.hysteresis", 1);
  if (const json* v = value("min_loss_scale")) {
    min_scale = r.number(*v, "fp16.min_loss_scale", 0);
    if (min_scale <= 0) r.fail("fp16.min_loss_scale", *v, "a number > 0");
  }
  out.scaler = scaler();
}

void parse_zero(const Reader& r, const json& root, const ShardingConfigContext& ctx, ShardingConfig& out) {
  const json* zero = r.section(root, "zero_optimization");
  if (!zero) r.fail("no zero_optimization section: give one with at least \"stage\" (Accelerate requires it too)");
  int64_t stage = 0;  // DeepSpeed's default
  if (const json* v = r.find(*zero, "stage"))
    stage = Reader::is_auto(*v) ? 2 : r.integer(*v, "zero_optimization.stage", 0);
  if (stage == 3)
    r.fail("zero_optimization.stage", 3, "0, 1 or 2: ZeRO-3 is not supported yet (it shards the parameters)");
  if (stage > 3) r.fail("zero_optimization.stage", stage, "0, 1 or 2");
  ShardingOptions o;
  o.strategy(stage == 0   ? ShardingStrategy::no_shard
             : stage == 1 ? ShardingStrategy::shard_optimizer
                          : ShardingStrategy::shard_grad_op);

  if (const json* off = r.find(*zero, "offload_optimizer")) {
    if (!off->is_object()) r.fail("zero_optimization.offload_optimizer", *off, "an object");
    OffloadOptions oo;
    std::string device = "none";
    if (const json* d = r.find(*off, "device"))
      device = Reader::is_auto(*d) ? "none" : lower(r.text(*d, "zero_optimization.offload_optimizer.device"));
    if (device == "cpu")
      oo.device(OffloadDevice::cpu);
    else if (device == "nvme")
      oo.device(OffloadDevice::nvme);
    else if (device != "none")
      r.fail("zero_optimization.offload_optimizer.device", r.find(*off, "device") ? *r.find(*off, "device") : json(),
             "one of none, cpu, nvme");
    if (const json* p = r.find(*off, "nvme_path")) {
      const std::string path = r.text(*p, "zero_optimization.offload_optimizer.nvme_path");
      if (path != "none" && path != "auto") oo.nvme_path(path);
    }
    if (const json* p = r.find(*off, "pin_memory"))
      oo.pin_memory(r.boolean(*p, "zero_optimization.offload_optimizer.pin_memory"));
    if (oo.device() == OffloadDevice::nvme && oo.nvme_path().empty())
      r.fail(
          "zero_optimization.offload_optimizer.device is \"nvme\" but no nvme_path is given: name the folder "
          "for the optimizer state pages");
    if (oo.device() != OffloadDevice::none && stage == 0)
      r.fail("zero_optimization.offload_optimizer.device", device, "none with stage 0 (offload needs stage 1 or 2)");
    o.offload_optimizer(oo);
  }
  if (const json* off = r.find(*zero, "offload_param")) {
    const json* d = off->is_object() ? r.find(*off, "device") : nullptr;
    if (d && !Reader::is_auto(*d) && lower(r.text(*d, "zero_optimization.offload_param.device")) != "none")
      r.fail("zero_optimization.offload_param.device", *d,
             "none: parameter offload needs ZeRO-3, which is not supported yet");
  }
  if (const json* v = r.find(*zero, "reduce_bucket_size")) {
    if (Reader::is_auto(*v)) {
      if (ctx.hidden_size) o.reduce_bucket_size(*ctx.hidden_size * *ctx.hidden_size);
    } else {
      o.reduce_bucket_size(r.integer(*v, "zero_optimization.reduce_bucket_size", 1));
    }
  }
  if (const json* v = r.find(*zero, "overlap_comm"))
    if (!Reader::is_auto(*v)) o.overlap_comm(r.boolean(*v, "zero_optimization.overlap_comm"));
  // Features that would change the numbers and that this engine does not have.
  for (const char* key : {"zero_quantized_weights", "zero_quantized_gradients", "zero_quantized_nontrainable_weights"})
    if (const json* v = r.find(*zero, key); v && r.boolean(*v, std::string("zero_optimization.") + key))
      r.fail(std::string("zero_optimization.") + key, *v, "false (quantized ZeRO++ communication is not supported)");
  if (const json* v = r.find(*zero, "zero_hpz_partition_size");
      v && r.integer(*v, "zero_optimization.zero_hpz_partition_size", 1) > 1)
    r.fail("zero_optimization.zero_hpz_partition_size", *v, "1 (hierarchical partitioning is not supported)");
  if (const json* v = r.find(*zero, "mics_shard_size"); v && r.integer(*v, "zero_optimization.mics_shard_size", -1) > 0)
    r.fail("zero_optimization.mics_shard_size", *v, "-1 (MiCS is not supported)");
  out.sharding = o;
}

void parse_training(const Reader& r, const json& root, const ShardingConfigContext& ctx, ShardingConfig& out) {
  if (const json* v = r.find(root, "gradient_accumulation_steps")) {
    if (Reader::is_auto(*v)) {
      out.gradient_accumulation_steps = ctx.gradient_accumulation_steps;
    } else {
      const int64_t n = r.integer(*v, "gradient_accumulation_steps", 1);
      if (ctx.gradient_accumulation_steps && *ctx.gradient_accumulation_steps != n)
        r.fail("gradient_accumulation_steps is " + std::to_string(n) + " but the Accelerator's is " +
               std::to_string(*ctx.gradient_accumulation_steps) + "; set it to \"auto\" or make them agree");
      out.gradient_accumulation_steps = n;
    }
  } else {
    out.gradient_accumulation_steps = ctx.gradient_accumulation_steps;
  }

  if (const json* v = r.find(root, "gradient_clipping")) {
    if (Reader::is_auto(*v)) {
      out.gradient_clipping = ctx.gradient_clipping.value_or(1.0);  // Accelerate fills "auto" with 1.0
    } else {
      const double c = r.number(*v, "gradient_clipping", 0);
      if (ctx.gradient_clipping && *ctx.gradient_clipping != c)
        r.fail("gradient_clipping is " + number_text(c) + " but the Accelerator's is " +
               number_text(*ctx.gradient_clipping) + "; set it to \"auto\" or make them agree");
      if (c > 0) out.gradient_clipping = c;  // 0: DeepSpeed's "no clipping"
    }
  } else {
    out.gradient_clipping = ctx.gradient_clipping;
  }
  if (out.gradient_clipping && *out.gradient_clipping <= 0) out.gradient_clipping.reset();

  if (const json* v = r.find(root, "train_micro_batch_size_per_gpu"); v && !Reader::is_auto(*v))
    out.train_micro_batch_size_per_gpu = r.integer(*v, "train_micro_batch_size_per_gpu", 1);
  if (const json* v = r.find(root, "train_batch_size"); v && !Reader::is_auto(*v))
    out.train_batch_size = r.integer(*v, "train_batch_size", 1);
  if (out.train_batch_size && out.train_micro_batch_size_per_gpu && out.gradient_accumulation_steps) {
    const int64_t want = *out.train_micro_batch_size_per_gpu * *out.gradient_accumulation_steps * ctx.world_size;
    if (*out.train_batch_size != want)
      r.fail("train_batch_size is " + std::to_string(*out.train_batch_size) +
             " but train_micro_batch_size_per_gpu * gradient_accumulation_steps * world size is " +
             std::to_string(*out.train_micro_batch_size_per_gpu) + " * " +
             std::to_string(*out.gradient_accumulation_steps) + " * " + std::to_string(ctx.world_size) + " = " +
             std::to_string(want));
  }
}

void parse_optimizer(const Reader& r, const json& root, ShardingConfig& out) {
  if (const json* opt = r.section(root, "optimizer")) {
    DeepSpeedOptimizerSection s;
    const json* type = r.find(*opt, "type");
    if (!type) r.fail("optimizer has no \"type\"");
    s.type = r.text(*type, "optimizer.type");
    const std::string t = lower(s.type);
    if (t != "adam" && t != "adamw")
      r.fail("optimizer.type", *type,
             "Adam or AdamW: accel builds no optimizer from the config (the one given to prepare() is used and "
             "checked against this section)");
    s.decoupled = t == "adamw";
    if (const json* params = r.find(*opt, "params")) {
      if (!params->is_object()) r.fail("optimizer.params", *params, "an object");
      if (t == "adam")
        if (const json* m = r.find(*params, "adam_w_mode")) s.decoupled = r.boolean(*m, "optimizer.params.adam_w_mode");
      if (t == "adam" && !r.find(*params, "adam_w_mode")) s.decoupled = true;  // DeepSpeed's default
      for (const char* key : {"lr", "eps", "weight_decay"})
        if (const json* v = r.find(*params, key); v && !Reader::is_auto(*v))
          s.params[key] = r.number(*v, std::string("optimizer.params.") + key, 0);
      if (const json* v = r.find(*params, "betas"); v && !Reader::is_auto(*v)) {
        if (!v->is_array() || v->size() != 2) r.fail("optimizer.params.betas", *v, "[beta1, beta2] or \"auto\"");
        s.params["beta1"] = r.number((*v)[0], "optimizer.params.betas[0]", 0);
        s.params["beta2"] = r.number((*v)[1], "optimizer.params.betas[1]", 0);
      }
    } else if (t == "adam") {
      s.decoupled = true;
    }
    out.optimizer = s;
  }
  if (const json* sched = r.section(root, "scheduler")) {
    if (const json* params = r.find(*sched, "params")) {
      if (!params->is_object()) r.fail("scheduler.params", *params, "an object");
      for (auto& [key, value] : params->items())
        if (!Reader::is_auto(value))
          r.fail("scheduler.params." + key, value,
                 "\"auto\": accel builds no scheduler from the DeepSpeed config; the scheduler given to prepare() "
                 "is used (remove the section or set its params to \"auto\")");
    }
  }
}

bool env_true(const EnvLookup& env, const std::string& name) { return env_bool(env, name).value_or(false); }

ShardingConfig fsdp_from_env(const EnvLookup& env) {
  ShardingConfig out;
  out.source = "environment";
  const long version = env_int(env, "FSDP_VERSION").value_or(1);
  if (version != 1 && version != 2)
    throw std::invalid_argument("FSDP_VERSION=" + std::to_string(version) + ": expected 1 or 2");
  static const std::vector<std::string> names = {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
                                                 "HYBRID_SHARD_ZERO2"};
  std::string name, what;  // the strategy, and the variable setting that chose it (for messages)
  if (version == 1) {
    const std::string variable = "FSDP_SHARDING_STRATEGY";
    const std::string raw = env_string(env, variable).value_or("FULL_SHARD");
    const std::string expected =
        ": expected one of FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2 (or 1-5)";
    name = upper(raw);
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
      const long n = parse_int(name, variable);
      if (n < 1 || n > 5) throw std::invalid_argument(variable + "=" + raw + expected);
      name = names[n - 1];
    }
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw std::invalid_argument(variable + "=" + raw + expected);
    what = variable + "=" + raw + (raw == name ? "" : " (" + name + ")");
  } else {
    const std::string variable = "FSDP_RESHARD_AFTER_FORWARD";
    const bool reshard = env_bool(env, variable).value_or(true);
    name = reshard ? "FULL_SHARD" : "SHARD_GRAD_OP";
    what = "FSDP_VERSION=2 with " + variable + "=" + (reshard ? "true (FULL_SHARD)" : "false (SHARD_GRAD_OP)");
  }
  if (name == "FULL_SHARD")
    throw std::invalid_argument(what +
                                ": FULL_SHARD (parameter sharding, ZeRO-3) is not supported yet; use SHARD_GRAD_OP "
                                "or NO_SHARD");
  if (name.rfind("HYBRID", 0) == 0)
    throw std::invalid_argument(what + ": hybrid sharding is not supported yet; use SHARD_GRAD_OP or NO_SHARD");
  ShardingOptions o;
  o.strategy(name == "NO_SHARD" ? ShardingStrategy::no_shard : ShardingStrategy::shard_grad_op);
  if (env_true(env, "FSDP_OFFLOAD_PARAMS")) o.offload_optimizer(OffloadOptions().device(OffloadDevice::cpu));
  out.sharding = o;
  return out;
}

// Accelerate's DeepSpeedPlugin without a config file: the config it builds
// from the variables, as JSON, then read like a file.
json deepspeed_json_from_env(const EnvLookup& env) {
  json j;
  j["train_batch_size"] = "auto";
  j["train_micro_batch_size_per_gpu"] = "auto";
  j["gradient_accumulation_steps"] = "auto";
  json zero;
  const std::string stage_var = "ACCELERATE_DEEPSPEED_ZERO_STAGE";
  const long stage = env_int(env, stage_var).value_or(2);
  if (stage == 3)
    throw std::invalid_argument(stage_var +
                                "=3: ZeRO-3 is not supported yet (it shards the parameters); use 0, 1 or 2");
  if (stage < 0 || stage > 3)
    throw std::invalid_argument(stage_var + "=" + std::to_string(stage) + ": expected 0, 1 or 2");
  zero["stage"] = stage;
  const std::string dev_var = "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE";
  const std::string device = lower(env_string(env, dev_var).value_or("none"));
  if (device != "none" && device != "cpu" && device != "nvme")
    throw std::invalid_argument(dev_var + "=" + device + ": expected none, cpu or nvme");
  zero["offload_optimizer"]["device"] = device;
  if (device == "nvme") {
    const std::string path_var = "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH";
    auto path = env_string(env, path_var);
    if (!path || *path == "none")
      throw std::invalid_argument(dev_var + "=nvme needs " + path_var + " (the folder for the optimizer state pages)");
    zero["offload_optimizer"]["nvme_path"] = *path;
  }
  const std::string param_var = "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE";
  const std::string param_device = lower(env_string(env, param_var).value_or("none"));
  if (param_device != "none")
    throw std::invalid_argument(param_var + "=" + param_device +
                                ": expected none (parameter offload needs ZeRO-3, which is not supported yet)");
  j["zero_optimization"] = zero;
  if (auto clip = env_string(env, "ACCELERATE_GRADIENT_CLIPPING"); clip && *clip != "auto")
    j["gradient_clipping"] = "auto";
  return j;
}

}  // namespace

ShardingConfig parse_deepspeed_config(const std::string& json_text, const std::string& source,
                                      const ShardingConfigContext& context) {
  Reader r(source);
  json root;
  try {
    root = parse_user_json(json_text);
  } catch (const std::invalid_argument& e) {
    r.fail(e.what());
  }
  if (!root.is_object()) r.fail("expected a JSON object at the top, got " + std::string(root.type_name()));
  ShardingConfig out;
  out.source = source;
  parse_zero(r, root, context, out);
  parse_training(r, root, context, out);
  parse_precision(r, root, context, out);
  parse_optimizer(r, root, out);
  return out;
}

ShardingConfig load_deepspeed_config(const std::filesystem::path& path, const ShardingConfigContext& context) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read the DeepSpeed config " + path.string() + ": no such readable file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_deepspeed_config(text.str(), path.string(), context);
}

ShardingConfig sharding_config_from_env(const EnvLookup& env, const ShardingConfigContext& context) {
  const bool deepspeed = env_true(env, "ACCELERATE_USE_DEEPSPEED");
  const bool fsdp = env_true(env, "ACCELERATE_USE_FSDP");
  if (deepspeed && fsdp)
    throw std::invalid_argument("ACCELERATE_USE_DEEPSPEED and ACCELERATE_USE_FSDP are both true; choose one");
  if (fsdp) return fsdp_from_env(env);
  if (!deepspeed) return {};

  ShardingConfigContext ctx = context;
  if (!ctx.gradient_clipping)
    if (auto clip = env_string(env, "ACCELERATE_GRADIENT_CLIPPING"); clip && *clip != "auto") {
      ctx.gradient_clipping = parse_number(*clip, "environment variable ACCELERATE_GRADIENT_CLIPPING");
    }
  if (!ctx.gradient_accumulation_steps)
    if (auto gas = env_int(env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS")) ctx.gradient_accumulation_steps = *gas;

  const auto file = env_string(env, "ACCELERATE_DEEPSPEED_CONFIG_FILE");
  if (file && *file != "none") {
    // Accelerate's _deepspeed_config_checks: with a config file, the
    // accelerate config must leave these keys to the file.
    static const std::vector<std::string> ignored = {
        "gradient_accumulation_steps", "gradient_clipping",      "zero_stage",
        "offload_optimizer_device",    "offload_param_device",   "offload_param_nvme_path",
        "offload_optimizer_nvme_path", "zero3_save_16bit_model", "mixed_precision"};
    const std::string fields = env_string(env, "ACCELERATE_CONFIG_DS_FIELDS").value_or("");
    std::stringstream ss(fields);
    for (std::string f; std::getline(ss, f, ',');)
      if (std::find(ignored.begin(), ignored.end(), f) != ignored.end())
        throw std::invalid_argument(
            "the accelerate config sets deepspeed_config." + f + " and also deepspeed_config_file " + *file +
            ": with a DeepSpeed config file, give gradient_accumulation_steps, gradient_clipping, zero_stage, "
            "offload_*_device, offload_*_nvme_path, zero3_save_16bit_model and mixed_precision in that file only");
    return load_deepspeed_config(*file, ctx);
  }
  return parse_deepspeed_config(deepspeed_json_from_env(env).dump(), "environment", ctx);
}

void check_batch_sizes(ShardingConfig& c, int64_t micro, int64_t accumulation, int world_size) {
  const std::string where = c.source.empty() ? "DeepSpeed config" : c.source;
  if (c.train_micro_batch_size_per_gpu && *c.train_micro_batch_size_per_gpu != micro)
    throw std::invalid_argument(where + ": train_micro_batch_size_per_gpu is " +
                                std::to_string(*c.train_micro_batch_size_per_gpu) +
                                " but the prepared data loader gives each process batches of " + std::to_string(micro) +
                                "; set it to \"auto\" or make them agree");
  const int64_t total = micro * accumulation * world_size;
  if (c.train_batch_size && *c.train_batch_size != total)
    throw std::invalid_argument(where + ": train_batch_size is " + std::to_string(*c.train_batch_size) + " but batch " +
                                std::to_string(micro) + " * accumulation " + std::to_string(accumulation) +
                                " * processes " + std::to_string(world_size) + " = " + std::to_string(total) +
                                "; set it to \"auto\" or make them agree");
  c.train_micro_batch_size_per_gpu = micro;
  c.train_batch_size = total;
}

void check_optimizer(const ShardingConfig& c, const torch::optim::Optimizer& optimizer) {
  if (!c.optimizer) return;
  const auto& s = *c.optimizer;
  const std::string where = (c.source.empty() ? std::string("DeepSpeed config") : c.source) + ": optimizer";
  const bool is_adamw = dynamic_cast<const torch::optim::AdamW*>(&optimizer) != nullptr;
  const bool is_adam = dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr;
  if (s.decoupled && !is_adamw)
    throw std::invalid_argument(where + " is " + s.type +
                                " with decoupled weight decay (AdamW) but the optimizer given to prepare() is not a "
                                "torch::optim::AdamW");
  if (!s.decoupled && !is_adam)
    throw std::invalid_argument(where + " is " + s.type +
                                " with L2 weight decay (adam_w_mode false) but the optimizer given to prepare() is not "
                                "a torch::optim::Adam");
  if (optimizer.param_groups().empty()) return;
  const auto& opts = optimizer.param_groups().front().options();
  std::map<std::string, double> have;
  have["lr"] = opts.get_lr();
  if (is_adamw) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(opts);
    have["eps"] = o.eps(), have["weight_decay"] = o.weight_decay();
    have["beta1"] = std::get<0>(o.betas()), have["beta2"] = std::get<1>(o.betas());
  } else {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(opts);
    have["eps"] = o.eps(), have["weight_decay"] = o.weight_decay();
    have["beta1"] = std::get<0>(o.betas()), have["beta2"] = std::get<1>(o.betas());
  }
  for (const auto& [key, value] : s.params) {
    const double h = have.at(key);
    if (std::abs(h - value) > 1e-12 * std::max(1.0, std::abs(value)))
      throw std::invalid_argument(where + ".params." + key + " is " + number_text(value) +
                                  " but the optimizer given to prepare() has " + number_text(h) +
                                  "; set it to \"auto\" or make them agree");
  }
}

}  // namespace accel
