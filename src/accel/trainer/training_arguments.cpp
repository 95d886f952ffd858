// TrainingArguments from flags and JSON: one table of the arguments, each
// with how a JSON value sets it and how it is written back, so that flags,
// files and to_json_string() cannot disagree on names or types.
#include "accel/trainer/training_arguments.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"

namespace accel {

using json = nlohmann::json;

IntervalStrategy parse_interval_strategy(const std::string& name, const std::string& argument) {
  if (name == "no") return IntervalStrategy::no;
  if (name == "steps") return IntervalStrategy::steps;
  if (name == "epoch") return IntervalStrategy::epoch;
  fail<std::invalid_argument>("TrainingArguments: ", argument, " = '", name, "', expected one of no, steps, epoch");
}

std::string to_string(IntervalStrategy strategy) {
  switch (strategy) {
    case IntervalStrategy::no: return "no";
    case IntervalStrategy::steps: return "steps";
    case IntervalStrategy::epoch: return "epoch";
  }
  return "?";
}

namespace {

enum class Kind { boolean, integer, real, text, list, object };

struct Field {
  std::string name;
  Kind kind;
  bool optional;
  std::function<void(TrainingArguments&, const json&)> set;
  std::function<json(const TrainingArguments&)> get;
};

[[noreturn]] void bad_type(const std::string& name, const json& v, const char* expected) {
  fail<std::invalid_argument>("TrainingArguments: ", name, " = ", v.dump(), ", expected ", expected);
}

bool as_bool(const std::string& n, const json& v) {
  if (!v.is_boolean()) bad_type(n, v, "true or false");
  return v.get<bool>();
}
int64_t as_int(const std::string& n, const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
      std::abs(v.get<double>()) < 9e15)
    return static_cast<int64_t>(v.get<double>());
  bad_type(n, v, "an integer");
}
double as_real(const std::string& n, const json& v) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) bad_type(n, v, "a finite number");
  return v.get<double>();
}
std::string as_text(const std::string& n, const json& v) {
  if (!v.is_string()) bad_type(n, v, "a string");
  return v.get<std::string>();
}
std::vector<std::string> as_list(const std::string& n, const json& v) {
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) bad_type(n, v, "a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(as_text(n, e));
  return out;
}

// Transformers maps the booleans to "all" and "no".
std::string as_tokens_seen(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "all" : "no";
  return as_text("include_num_input_tokens_seen", v);
}

// A dict field's value: an object, or from a flag its JSON text ("{...}")
// or the path of a JSON file holding it (Transformers reads both).
json as_object(const std::string& n, json v) {
  if (v.is_string()) {
    const auto text = v.get<std::string>();
    if (text.rfind('{', 0) == 0) {
      try {
        v = json::parse(text);
      } catch (const json::exception& e) {
        fail<std::invalid_argument>("TrainingArguments: ", n, " is not valid JSON (", e.what(), ")");
      }
    } else {
      std::ifstream in(text);
      ACCEL_CHECK_ARG(in.good(), "TrainingArguments: ", n, " = '", text,
                      "' is neither a JSON object nor a readable JSON file");
      try {
        v = json::parse(in);
      } catch (const json::exception& e) {
        fail<std::invalid_argument>("TrainingArguments: ", n, " file '", text, "' is not valid JSON (", e.what(), ")");
      }
    }
  }
  if (v.is_null()) return json::object();
  if (!v.is_object()) bad_type(n, v, "a JSON object");
  return v;
}

AcceleratorConfig as_accelerator_config(const json& value) {
  const std::string n = "accelerator_config";
  AcceleratorConfig c;
  const json object = as_object(n, value);  // items() would not keep a temporary alive
  for (const auto& [key, v] : object.items()) {
    const std::string where = n + "." + key;
    if (key == "split_batches") {
      c.split_batches(as_bool(where, v));
    } else if (key == "dispatch_batches") {
      c.dispatch_batches(v.is_null() ? std::nullopt : std::optional<bool>(as_bool(where, v)));
    } else if (key == "even_batches") {
      c.even_batches(as_bool(where, v));
    } else if (key == "use_seedable_sampler") {
      ACCEL_CHECK_ARG(as_bool(where, v), "TrainingArguments: ", where,
                      " = false is not supported: accel's samplers always shuffle from a seed (data_seed)");
    } else if (key == "non_blocking") {
      c.non_blocking(as_bool(where, v));
    } else if (key == "gradient_accumulation_kwargs" || key == "use_configured_state") {
      ACCEL_CHECK_ARG(v.is_null() || v == false || (v.is_object() && v.empty()), "TrainingArguments: ", where, " = ",
                      v.dump(), " is not supported by accel's Trainer (only Transformers' default is accepted)");
    } else {
      fail<std::invalid_argument>("TrainingArguments: ", n, " has '", key,
                                  "', expected split_batches, dispatch_batches, even_batches, use_seedable_sampler, "
                                  "non_blocking, gradient_accumulation_kwargs or use_configured_state");
    }
  }
  return c;
}

// As Python's TrainingArguments.to_dict() writes it.
json accelerator_config_json(const AcceleratorConfig& c) {
  return {{"split_batches", c.split_batches()},
          {"dispatch_batches", c.dispatch_batches() ? json(*c.dispatch_batches()) : json(nullptr)},
          {"even_batches", c.even_batches()},
          {"use_seedable_sampler", c.use_seedable_sampler()},
          {"non_blocking", c.non_blocking()},
          {"gradient_accumulation_kwargs", nullptr}};
}

SchedulerKwargs as_kwargs(const std::string& n, json v) {
  if (v.is_string()) {  // flags give the dict as JSON text
    try {
      v = json::parse(v.get<std::string>());
    } catch (const json::exception&) {
      bad_type(n, v, "a JSON object such as {\"num_cycles\": 2}");
    }
  }
  if (v.is_null()) return {};
  if (!v.is_object()) bad_type(n, v, "a JSON object such as {\"num_cycles\": 2}");
  SchedulerKwargs k;
  for (const auto& [key, value] : v.items()) {
    const std::string where = n + "." + key;
    if (key == "num_cycles") {
      k.num_cycles(as_real(where, value));
    } else if (key == "lr_end") {
      k.lr_end(as_real(where, value));
    } else if (key == "power") {
      k.power(as_real(where, value));
    } else if (key == "timescale") {
      k.timescale(as_int(where, value));
    } else {
      fail<std::invalid_argument>("TrainingArguments: ", n, " has '", key,
                                  "', expected num_cycles, lr_end, power or timescale");
    }
  }
  return k;
}

json kwargs_json(const SchedulerKwargs& k) {
  json j = json::object();
  if (k.num_cycles()) j["num_cycles"] = *k.num_cycles();
  if (k.lr_end()) j["lr_end"] = *k.lr_end();
  if (k.power()) j["power"] = *k.power();
  if (k.timescale()) j["timescale"] = *k.timescale();
  return j;
}

template <class T>
json opt_json(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

// One entry per argument. The macros keep the name, the setter and the
// getter of an argument on one line.
#define ACCEL_FIELD(kind, optional, name, from, to)                                                                  \
  Field {                                                                                                            \
#name, kind, optional,                                                                                           \
        [](TrainingArguments & a, const json& v) { a.name(from); },                                                  \
                                                                 [](const TrainingArguments& a) { return json(to); } \
  }
#define ACCEL_PLAIN(kind, name, conv) ACCEL_FIELD(kind, false, name, conv(#name, v), a.name())
#define ACCEL_OPT(kind, name, conv)                                                               \
  Field {                                                                                         \
#name, kind, true,                                                                              \
        [](TrainingArguments& a, const json& v) {                                                       \
          if (v.is_null())                                                                              \
            a.name(std::nullopt);                                                                       \
          else                                                                                          \
            a.name(conv(#name, v));                                                                     \
        },                                                                                              \
        [](const TrainingArguments& a) { return opt_json(a.name()); } \
  }
#define ACCEL_STRATEGY(name) \
  ACCEL_FIELD(Kind::text, false, name, parse_interval_strategy(as_text(#name, v), #name), to_string(a.name()))

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      ACCEL_PLAIN(Kind::text, output_dir, as_text),
      ACCEL_OPT(Kind::text, resume_from_checkpoint, as_text),
      ACCEL_PLAIN(Kind::integer, per_device_train_batch_size, as_int),
      ACCEL_PLAIN(Kind::integer, per_device_eval_batch_size, as_int),
      ACCEL_PLAIN(Kind::integer, gradient_accumulation_steps, as_int),
      ACCEL_PLAIN(Kind::real, num_train_epochs, as_real),
      ACCEL_PLAIN(Kind::integer, max_steps, as_int),
      ACCEL_PLAIN(Kind::text, optim, as_text),
      ACCEL_PLAIN(Kind::real, learning_rate, as_real),
      ACCEL_PLAIN(Kind::real, weight_decay, as_real),
      ACCEL_PLAIN(Kind::real, adam_beta1, as_real),
      ACCEL_PLAIN(Kind::real, adam_beta2, as_real),
      ACCEL_PLAIN(Kind::real, adam_epsilon, as_real),
      ACCEL_PLAIN(Kind::real, max_grad_norm, as_real),
      ACCEL_PLAIN(Kind::text, lr_scheduler_type, as_text),
      ACCEL_FIELD(Kind::object, true, lr_scheduler_kwargs, as_kwargs("lr_scheduler_kwargs", v),
                  kwargs_json(a.lr_scheduler_kwargs())),
      ACCEL_PLAIN(Kind::real, warmup_steps, as_real),
      ACCEL_PLAIN(Kind::real, warmup_ratio, as_real),
      ACCEL_STRATEGY(logging_strategy),
      ACCEL_PLAIN(Kind::real, logging_steps, as_real),
      ACCEL_PLAIN(Kind::boolean, logging_first_step, as_bool),
      ACCEL_PLAIN(Kind::boolean, logging_nan_inf_filter, as_bool),
      ACCEL_FIELD(Kind::list, true, report_to, v.is_null() ? std::vector<std::string>{} : as_list("report_to", v),
                  a.report_to()),
      ACCEL_OPT(Kind::text, logging_dir, as_text),
      ACCEL_OPT(Kind::text, run_name, as_text),
      ACCEL_FIELD(Kind::boolean, false, disable_tqdm, !v.is_null() && as_bool("disable_tqdm", v), a.disable_tqdm()),
      ACCEL_STRATEGY(eval_strategy),
      ACCEL_OPT(Kind::real, eval_steps, as_real),
      ACCEL_PLAIN(Kind::real, eval_delay, as_real),
      ACCEL_FIELD(Kind::list, true, label_names,
                  v.is_null() ? std::vector<std::string>{"labels"} : as_list("label_names", v), a.label_names()),
      ACCEL_PLAIN(Kind::boolean, prediction_loss_only, as_bool),
      ACCEL_PLAIN(Kind::boolean, eval_on_start, as_bool),
      ACCEL_OPT(Kind::integer, eval_accumulation_steps, as_int),
      ACCEL_PLAIN(Kind::real, label_smoothing_factor, as_real),
      ACCEL_FIELD(Kind::text, false, include_num_input_tokens_seen, as_tokens_seen(v),
                  a.include_num_input_tokens_seen()),
      ACCEL_OPT(Kind::real, neftune_noise_alpha, as_real),
      ACCEL_STRATEGY(save_strategy),
      ACCEL_PLAIN(Kind::real, save_steps, as_real),
      ACCEL_OPT(Kind::integer, save_total_limit, as_int),
      ACCEL_PLAIN(Kind::boolean, save_only_model, as_bool),
      ACCEL_PLAIN(Kind::boolean, load_best_model_at_end, as_bool),
      ACCEL_OPT(Kind::text, metric_for_best_model, as_text),
      ACCEL_OPT(Kind::boolean, greater_is_better, as_bool),
      ACCEL_PLAIN(Kind::boolean, ignore_data_skip, as_bool),
      ACCEL_OPT(Kind::boolean, activation_checkpointing, as_bool),
      ACCEL_OPT(Kind::boolean, gradient_checkpointing, as_bool),
      ACCEL_PLAIN(Kind::boolean, auto_find_batch_size, as_bool),
      ACCEL_PLAIN(Kind::boolean, torch_compile, as_bool),
      ACCEL_PLAIN(Kind::integer, seed, as_int),
      ACCEL_OPT(Kind::integer, data_seed, as_int),
      ACCEL_PLAIN(Kind::boolean, full_determinism, as_bool),
      ACCEL_PLAIN(Kind::boolean, bf16, as_bool),
      ACCEL_PLAIN(Kind::boolean, fp16, as_bool),
      ACCEL_PLAIN(Kind::boolean, use_cpu, as_bool),
      ACCEL_PLAIN(Kind::boolean, dataloader_drop_last, as_bool),
      ACCEL_PLAIN(Kind::integer, dataloader_num_workers, as_int),
      ACCEL_OPT(Kind::integer, dataloader_prefetch_factor, as_int),
      ACCEL_PLAIN(Kind::boolean, dataloader_pin_memory, as_bool),
      ACCEL_PLAIN(Kind::boolean, dataloader_persistent_workers, as_bool),
      ACCEL_FIELD(Kind::object, true, accelerator_config, as_accelerator_config(v),
                  accelerator_config_json(a.accelerator_config())),
      ACCEL_PLAIN(Kind::text, train_sampling_strategy, as_text),
      ACCEL_PLAIN(Kind::text, length_column_name, as_text),
  };
  return table;
}

const Field* find_field(const std::string& name) {
  for (const auto& f : fields())
    if (f.name == name) return &f;
  return nullptr;
}

// Transformers' default, or a value that means the same after its
// __post_init__ (None written back as false, [] or "").
bool is_default_value(const json& value, const json& dflt) {
  if (value == dflt) return true;
  const bool empty = value.is_null() || value == false || (value.is_array() && value.empty()) || value == "";
  const bool dflt_empty = dflt.is_null() || dflt == false || (dflt.is_array() && dflt.empty()) || dflt == "";
  return empty && dflt_empty;
}

void apply(TrainingArguments& args, const std::string& name, const json& value) {
  if (const Field* f = find_field(name)) {
    f->set(args, value);
    return;
  }
  // Python's __post_init__ writes this backend whenever torch_compile is
  // on, so that a JSON it wrote with torch_compile loads.
  if (name == "torch_compile_backend" && value == "inductor") return;
  // to_dict() writes every *_token as a placeholder ("<HUB_TOKEN>"), set or not.
  if (name == "hub_token" && value == "<HUB_TOKEN>") return;
  for (const auto& [refused, dflt_text] : refused_training_arguments()) {
    if (refused != name) continue;
    const json dflt = json::parse(dflt_text);
    ACCEL_CHECK_ARG(is_default_value(value, dflt), "TrainingArguments: ", name, " = ", value.dump(),
                    " is not supported by accel's Trainer (only Transformers' default ", dflt_text, " is accepted)");
    return;
  }
  fail<std::invalid_argument>("TrainingArguments: unknown argument '", name, "'");
}

bool parse_bool_text(const std::string& name, const std::string& s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "true" || l == "t" || l == "yes" || l == "y" || l == "1") return true;
  if (l == "false" || l == "f" || l == "no" || l == "n" || l == "0") return false;
  fail<std::invalid_argument>("TrainingArguments: --", name, " '", s, "', expected true or false");
}

json flag_value(const std::string& name, Kind kind, const std::string& s) {
  switch (kind) {
    case Kind::boolean: return parse_bool_text(name, s);
    case Kind::integer: {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      ACCEL_CHECK_ARG(ec == std::errc() && end == s.data() + s.size() && !s.empty(), "TrainingArguments: --", name,
                      " '", s, "', expected an integer");
      return v;
    }
    case Kind::real: {
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      ACCEL_CHECK_ARG(!s.empty() && end == s.c_str() + s.size() && std::isfinite(v), "TrainingArguments: --", name,
                      " '", s, "', expected a number");
      return v;
    }
    default: return s;
  }
}

// A refused argument's kind, guessed from its default, for flag parsing.
Kind refused_kind(const std::string& dflt_text) {
  const json d = json::parse(dflt_text);
  if (d.is_boolean()) return Kind::boolean;
  if (d.is_number_integer()) return Kind::integer;
  if (d.is_number()) return Kind::real;
  return Kind::text;
}

}  // namespace

TrainingArguments TrainingArguments::from_flags(int argc, const char* const* argv) {
  std::vector<std::string> flags;
  for (int i = 1; i < argc; ++i) flags.emplace_back(argv[i]);
  return from_flags(flags);
}

TrainingArguments TrainingArguments::from_flags(const std::vector<std::string>& flags) {
  TrainingArguments args;
  for (size_t i = 0; i < flags.size(); ++i) {
    const std::string& token = flags[i];
    ACCEL_CHECK_ARG(token.rfind("--", 0) == 0 && token.size() > 2, "TrainingArguments: '", token,
                    "' is not a flag (expected --name value)");
    std::string name = token.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Field* f = find_field(name);
    Kind kind = Kind::text;
    bool known = f != nullptr;
    if (f) kind = f->kind;
    for (const auto& [refused, dflt] : refused_training_arguments())
      if (refused == name) known = true, kind = refused_kind(dflt);
    // --no_<flag> turns a boolean off, as HfArgumentParser offers it.
    if (!known && name.rfind("no_", 0) == 0 && !inline_value) {
      const Field* g = find_field(name.substr(3));
      if (g && g->kind == Kind::boolean) {
        g->set(args, false);
        continue;
      }
    }
    ACCEL_CHECK_ARG(known, "TrainingArguments: unknown argument '--", name, "'");
    const auto next_is_value = [&] { return i + 1 < flags.size() && flags[i + 1].rfind("--", 0) != 0; };
    json value;
    if (inline_value) {
      value = kind == Kind::list ? json::array({*inline_value}) : flag_value(name, kind, *inline_value);
    } else if (kind == Kind::boolean) {
      value = next_is_value() ? flag_value(name, kind, flags[++i]) : json(true);
    } else if (kind == Kind::list) {
      value = json::array();
      while (next_is_value()) value.push_back(flags[++i]);
    } else {
      ACCEL_CHECK_ARG(next_is_value(), "TrainingArguments: --", name, " needs a value");
      value = flag_value(name, kind, flags[++i]);
    }
    apply(args, name, value);
  }
  return args;
}

TrainingArguments TrainingArguments::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail<std::invalid_argument>("TrainingArguments: not valid JSON: ", e.what());
  }
  ACCEL_CHECK_ARG(j.is_object(), "TrainingArguments: expected a JSON object of argument names, got ",
                  j.dump().substr(0, 80));
  TrainingArguments args;
  for (const auto& [name, value] : j.items()) apply(args, name, value);
  return args;
}

TrainingArguments TrainingArguments::from_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  ACCEL_CHECK_ARG(in.good(), "TrainingArguments: cannot read '", path.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const std::invalid_argument& e) {
    fail<std::invalid_argument>(path.string(), ": ", e.what());
  }
}

std::string TrainingArguments::to_json_string() const {
  json j = json::object();
  for (const auto& f : fields()) j[f.name] = f.get(*this);
  return j.dump(2);
}

}  // namespace accel
