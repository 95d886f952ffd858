// ShardingConfig from a DeepSpeed JSON file: the sections accel acts on
// (zero_optimization, the batch and accumulation keys, fp16 / bf16,
// optimizer, scheduler), read with Accelerate's rules for "auto".
#include "accel/parallel/sharding_config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"
#include "accel/util/strings.h"
#include "accel/util/user_json.h"

namespace accel {
namespace {

using json = nlohmann::json;

// Reads one file's values. Every message starts with the file's name, and
// one about a value quotes it after its key (entry()). Numbers in messages
// are written as std::ostream writes a double, as they always have been.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  const std::string& source() const { return source_; }

  /// "<source>: <key> = <value as JSON, cut short>", for a message about that value.
  std::string entry(const std::string& key, const json& value) const {
    return source_ + ": " + key + " = " + json_excerpt(value);
  }

  static bool is_auto(const json& v) { return v.is_string() && v.get<std::string>() == "auto"; }

  const json* find(const json& object, const std::string& key) const {
    if (!object.is_object()) return nullptr;
    auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  const json* section(const json& root, const std::string& key) const {
    const json* s = find(root, key);
    ACCEL_CHECK_ARG(!s || s->is_object(), entry(key, *s), ": expected an object");
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
      fail(entry(key, v), ": expected an integer >= ", min);
    ACCEL_CHECK_ARG(d >= static_cast<double>(min) && d <= 9.2e18, entry(key, v), ": expected an integer >= ", min);
    return static_cast<int64_t>(d);
  }

  double number(const json& v, const std::string& key, double min) const {
    ACCEL_CHECK_ARG(v.is_number() && v.get<double>() >= min, entry(key, v), ": expected a number >= ", min);
    return v.get<double>();
  }

  bool boolean(const json& v, const std::string& key) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string()) {  // Accelerate compares str(value).lower() with "true"
      const std::string s = lower(v.get<std::string>());
      if (s == "true") return true;
      if (s == "false") return false;
    }
    fail(entry(key, v), ": expected true or false");
  }

  std::string text(const json& v, const std::string& key) const {
    ACCEL_CHECK_ARG(v.is_string(), entry(key, v), ": expected a string");
    return v.get<std::string>();
  }

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
    ACCEL_CHECK_ARG(!bf16, r.source(), ": both bf16 and bfloat16 sections are given; keep one");
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
    const std::string wanted = to_string(*want);
    const std::string other = is_fp16 ? bf16_key : "fp16";
    ACCEL_CHECK_ARG(!(is_fp16 ? use_bf16 : use_fp16), r.source(), ": ", other,
                    ".enabled is true but the Accelerator's mixed_precision is '", wanted,
                    "': mixed precision cannot be '", wanted, "' when ", other,
                    " is enabled in the DeepSpeed config; set it to \"auto\" or make them agree");
    ACCEL_CHECK_ARG(is_fp16 ? use_fp16 : use_bf16, r.source(), ": ", is_fp16 ? std::string("fp16") : bf16_key,
                    ".enabled is false but the Accelerator's mixed_precision is '", wanted,
                    "'; set it to \"auto\" or make them agree");
  }
  ACCEL_CHECK_ARG(!(use_fp16 && use_bf16), r.source(), ": fp16.enabled and ", bf16_key,
                  ".enabled are both true; enable one");
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
  if (const json* v = value("loss_scale"))
    ACCEL_CHECK_ARG(r.number(*v, "fp16.loss_scale", 0) == 0, r.entry("fp16.loss_scale", *v),
                    ": expected 0 (dynamic loss scaling); a static loss scale is not supported yet");
  if (const json* v = value("initial_scale_power")) {
    power = r.integer(*v, "fp16.initial_scale_power", 0);
    ACCEL_CHECK_ARG(power <= 126, r.entry("fp16.initial_scale_power", *v), ": expected an integer in [0, 126]");
  }
  if (const json* v = value("loss_scale_window")) window = r.integer(*v, "fp16.loss_scale_window", 1);
  if (const json* v = value("hysteresis")) hysteresis = r.integer(*v, "fp16.hysteresis", 1);
  if (const json* v = value("min_loss_scale")) {
    min_scale = r.number(*v, "fp16.min_loss_scale", 0);
    ACCEL_CHECK_ARG(min_scale > 0, r.entry("fp16.min_loss_scale", *v), ": expected a number > 0");
  }
  out.scaler = scaler();
}

// zero_optimization.<key>: offload_optimizer or offload_param.
OffloadOptions parse_offload(const Reader& r, const json& off, int64_t stage, const std::string& key) {
  const std::string name = "zero_optimization." + key;
  ACCEL_CHECK_ARG(off.is_object(), r.entry(name, off), ": expected an object");
  OffloadOptions oo;
  const json* d = r.find(off, "device");
  const std::string device = !d || Reader::is_auto(*d) ? "none" : lower(r.text(*d, name + ".device"));
  if (device == "cpu")
    oo.device(OffloadDevice::cpu);
  else if (device == "nvme")
    oo.device(OffloadDevice::nvme);
  else if (device != "none")
    fail(r.entry(name + ".device", *d), ": expected one of none, cpu, nvme");
  if (const json* p = r.find(off, "nvme_path")) {
    const std::string path = r.text(*p, name + ".nvme_path");
    if (path != "none" && path != "auto") oo.nvme_path(path);
  }
  if (const json* p = r.find(off, "pin_memory")) oo.pin_memory(r.boolean(*p, name + ".pin_memory"));
  ACCEL_CHECK_ARG(oo.device() != OffloadDevice::nvme || !oo.nvme_path().empty(), r.source(), ": ", name,
                  ".device is \"nvme\" but no nvme_path is given: name the folder for the pages");
  if (key == "offload_param") {
    ACCEL_CHECK_ARG(oo.device() == OffloadDevice::none || stage == 3, r.entry(name + ".device", device),
                    ": expected none with stage ", stage, " (parameter offload needs stage 3)");
    // DeepSpeed reads the rest for device nvme only. max_in_cpu is
    // honoured; buffer_count and buffer_size size DeepSpeed's pool of
    // page-locked swap buffers, and accel has none (the files are mapped,
    // and the kernel's page cache is the buffer): their defaults are what
    // accel does, and another value is refused rather than ignored.
    if (oo.device() == OffloadDevice::nvme) {
      if (const json* v = r.find(off, "max_in_cpu"); v && !Reader::is_auto(*v))
        oo.max_in_cpu(r.integer(*v, name + ".max_in_cpu", 0));
      for (const auto& [field, standard] : {std::pair<std::string, int64_t>{"buffer_count", 5},
                                            std::pair<std::string, int64_t>{"buffer_size", 100'000'000}}) {
        const json* v = r.find(off, field);
        if (!v || Reader::is_auto(*v)) continue;
        ACCEL_CHECK_ARG(r.integer(*v, name + "." + field, 0) == standard, r.entry(name + "." + field, *v),
                        ": expected ", standard,
                        " (DeepSpeed's default): accel maps the parameter files and lets the kernel's page cache "
                        "buffer them, so there is no pool of swap buffers to size");
      }
    }
  } else {
    ACCEL_CHECK_ARG(oo.device() == OffloadDevice::none || stage != 0, r.entry(name + ".device", device),
                    ": expected none with stage 0 (offload needs stage 1 or 2)");
  }
  return oo;
}

void parse_zero(const Reader& r, const json& root, const ShardingConfigContext& ctx, ShardingConfig& out) {
  const json* zero = r.section(root, "zero_optimization");
  ACCEL_CHECK_ARG(zero != nullptr, r.source(),
                  ": no zero_optimization section: give one with at least \"stage\" (Accelerate requires it too)");
  int64_t stage = 0;  // DeepSpeed's default
  if (const json* v = r.find(*zero, "stage"))
    stage = Reader::is_auto(*v) ? 2 : r.integer(*v, "zero_optimization.stage", 0);
  ACCEL_CHECK_ARG(stage <= 3, r.entry("zero_optimization.stage", stage), ": expected 0, 1, 2 or 3");
  ShardingOptions o;
  o.strategy(stage == 0   ? ShardingStrategy::no_shard
             : stage == 1 ? ShardingStrategy::shard_optimizer
             : stage == 2 ? ShardingStrategy::shard_grad_op
                          : ShardingStrategy::full_shard);  // every unit of the model shards

  if (const json* off = r.find(*zero, "offload_optimizer"))
    o.offload_optimizer(parse_offload(r, *off, stage, "offload_optimizer"));
  if (const json* off = r.find(*zero, "offload_param")) o.offload_param(parse_offload(r, *off, stage, "offload_param"));
  // Stage 3's prefetch: DeepSpeed gathers ahead, along the recorded order
  // of modules, up to stage3_prefetch_bucket_size elements (default 5e7;
  // "auto" is filled from the model, never 0), never beyond
  // stage3_max_live_parameters (default 1e9). accel prefetches whole units:
  // the next unit in forward and in backward, unless that would exceed the
  // live bound; a bucket of 0 turns prefetching off. The reuse distance
  // bounds what stays gathered: accel frees a unit when it leaves. A
  // persistence threshold asks to keep small parameters unsharded, for
  // speed; sharding them too gives the same numbers.
  // gather_16bit_weights_on_model_save: save_model always gathers.
  int64_t prefetch_bucket = 50'000'000, max_live = 1'000'000'000;
  if (const json* v = r.find(*zero, "stage3_prefetch_bucket_size"); v && !Reader::is_auto(*v))
    prefetch_bucket = r.integer(*v, "zero_optimization.stage3_prefetch_bucket_size", 0);
  if (const json* v = r.find(*zero, "stage3_max_live_parameters"); v && !Reader::is_auto(*v))
    max_live = r.integer(*v, "zero_optimization.stage3_max_live_parameters", 0);
  for (const std::string key : {"stage3_param_persistence_threshold", "stage3_max_reuse_distance"})
    if (const json* v = r.find(*zero, key); v && !Reader::is_auto(*v)) r.integer(*v, "zero_optimization." + key, 0);
  if (stage == 3) {
    o.forward_prefetch(prefetch_bucket > 0);
    o.backward_prefetch(prefetch_bucket > 0 ? BackwardPrefetch::backward_pre : BackwardPrefetch::none);
    o.max_live_parameters(max_live);
  }
  if (const json* v = r.find(*zero, "stage3_gather_16bit_weights_on_model_save"); v && !Reader::is_auto(*v))
    r.boolean(*v, "zero_optimization.stage3_gather_16bit_weights_on_model_save");
  if (const json* v = r.find(*zero, "reduce_bucket_size")) {
    if (!Reader::is_auto(*v))
      o.reduce_bucket_size(r.integer(*v, "zero_optimization.reduce_bucket_size", 1));
    else if (ctx.hidden_size)
      o.reduce_bucket_size(*ctx.hidden_size * *ctx.hidden_size);  // Accelerate's fill for "auto"
    else
      out.reduce_bucket_size_from_model = true;  // fill_from_model() sets it, with the model
  }
  if (const json* v = r.find(*zero, "overlap_comm"))
    if (!Reader::is_auto(*v)) o.overlap_comm(r.boolean(*v, "zero_optimization.overlap_comm"));
  // Features that would change the numbers and that this engine does not have.
  for (const std::string key :
       {"zero_quantized_weights", "zero_quantized_gradients", "zero_quantized_nontrainable_weights"}) {
    const json* v = r.find(*zero, key);
    ACCEL_CHECK_ARG(!v || !r.boolean(*v, "zero_optimization." + key), r.entry("zero_optimization." + key, *v),
                    ": expected false (quantized ZeRO++ communication is not supported)");
  }
  if (const json* v = r.find(*zero, "zero_hpz_partition_size"))
    ACCEL_CHECK_ARG(r.integer(*v, "zero_optimization.zero_hpz_partition_size", 1) <= 1,
                    r.entry("zero_optimization.zero_hpz_partition_size", *v),
                    ": expected 1 (hierarchical partitioning is not supported)");
  if (const json* v = r.find(*zero, "mics_shard_size"))
    ACCEL_CHECK_ARG(r.integer(*v, "zero_optimization.mics_shard_size", -1) <= 0,
                    r.entry("zero_optimization.mics_shard_size", *v), ": expected -1 (MiCS is not supported)");
  out.sharding = o;
}

void parse_training(const Reader& r, const json& root, const ShardingConfigContext& ctx, ShardingConfig& out) {
  if (const json* v = r.find(root, "gradient_accumulation_steps")) {
    if (Reader::is_auto(*v)) {
      out.gradient_accumulation_steps = ctx.gradient_accumulation_steps;
    } else {
      const int64_t n = r.integer(*v, "gradient_accumulation_steps", 1);
      ACCEL_CHECK_ARG(!ctx.gradient_accumulation_steps || *ctx.gradient_accumulation_steps == n, r.source(),
                      ": gradient_accumulation_steps is ", n, " but the Accelerator's is ",
                      *ctx.gradient_accumulation_steps, "; set it to \"auto\" or make them agree");
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
      ACCEL_CHECK_ARG(!ctx.gradient_clipping || *ctx.gradient_clipping == c, r.source(), ": gradient_clipping is ", c,
                      " but the Accelerator's is ", *ctx.gradient_clipping, "; set it to \"auto\" or make them agree");
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
    const int64_t micro = *out.train_micro_batch_size_per_gpu, steps = *out.gradient_accumulation_steps;
    const int64_t want = micro * steps * ctx.world_size;
    ACCEL_CHECK_ARG(*out.train_batch_size == want, r.source(), ": train_batch_size is ", *out.train_batch_size,
                    " but train_micro_batch_size_per_gpu * gradient_accumulation_steps * world size is ", micro, " * ",
                    steps, " * ", ctx.world_size, " = ", want);
  }
}

DeepSpeedOptimizerSection parse_optimizer_section(const Reader& r, const json& opt) {
  DeepSpeedOptimizerSection s;
  const json* type = r.find(opt, "type");
  ACCEL_CHECK_ARG(type != nullptr, r.source(), ": optimizer has no \"type\"");
  s.type = r.text(*type, "optimizer.type");
  const std::string t = lower(s.type);
  ACCEL_CHECK_ARG(t == "adam" || t == "adamw", r.entry("optimizer.type", *type),
                  ": expected Adam or AdamW: accel builds no optimizer from the config (the one given to prepare() "
                  "is used and checked against this section)");
  s.decoupled = t == "adamw";
  if (const json* params = r.find(opt, "params")) {
    ACCEL_CHECK_ARG(params->is_object(), r.entry("optimizer.params", *params), ": expected an object");
    if (t == "adam")
      if (const json* m = r.find(*params, "adam_w_mode")) s.decoupled = r.boolean(*m, "optimizer.params.adam_w_mode");
    if (t == "adam" && !r.find(*params, "adam_w_mode")) s.decoupled = true;  // DeepSpeed's default
    for (const char* key : {"lr", "eps", "weight_decay"})
      if (const json* v = r.find(*params, key); v && !Reader::is_auto(*v))
        s.params[key] = r.number(*v, std::string("optimizer.params.") + key, 0);
    if (const json* v = r.find(*params, "betas"); v && !Reader::is_auto(*v)) {
      ACCEL_CHECK_ARG(v->is_array() && v->size() == 2, r.entry("optimizer.params.betas", *v),
                      ": expected [beta1, beta2] or \"auto\"");
      s.params["beta1"] = r.number((*v)[0], "optimizer.params.betas[0]", 0);
      s.params["beta2"] = r.number((*v)[1], "optimizer.params.betas[1]", 0);
    }
  } else if (t == "adam") {
    s.decoupled = true;
  }
  return s;
}

void parse_optimizer(const Reader& r, const json& root, ShardingConfig& out) {
  if (const json* opt = r.section(root, "optimizer")) out.optimizer = parse_optimizer_section(r, *opt);
  if (const json* sched = r.section(root, "scheduler")) {
    if (const json* params = r.find(*sched, "params")) {
      ACCEL_CHECK_ARG(params->is_object(), r.entry("scheduler.params", *params), ": expected an object");
      for (auto& [key, value] : params->items())
        ACCEL_CHECK_ARG(Reader::is_auto(value), r.entry("scheduler.params." + key, value),
                        ": expected \"auto\": accel builds no scheduler from the DeepSpeed config; the scheduler "
                        "given to prepare() is used (remove the section or set its params to \"auto\")");
    }
  }
}

}  // namespace

ShardingConfig parse_deepspeed_config(const std::string& json_text, const std::string& source,
                                      const ShardingConfigContext& context) {
  Reader r(source);
  json root;
  try {
    root = parse_user_json(json_text);
  } catch (const std::invalid_argument& e) {
    fail(source, ": ", e.what());
  }
  ACCEL_CHECK_ARG(root.is_object(), source, ": expected a JSON object at the top, got ", root.type_name());
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
  ACCEL_CHECK_ARG(in, "cannot read the DeepSpeed config ", path.string(), ": no such readable file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_deepspeed_config(text.str(), path.string(), context);
}

}  // namespace accel
