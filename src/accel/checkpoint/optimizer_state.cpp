#include "accel/checkpoint/optimizer_state.h"

#include <limits>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include "accel/util/check.h"
#include "accel/util/format.h"
#include "accel/util/user_json.h"

namespace accel {

namespace {

using json = nlohmann::json;
constexpr const char* kFormat = "accel.optimizer/1";

// The fields of each family, as (name, reference) pairs handed to a visitor
// that either writes them out or reads them in. State tensors that exist
// only under some options (amsgrad's max, RMSprop's momentum and centered
// averages) are optional; a load requires the others.
constexpr bool kRequired = true, kOptional = false;
struct AdamFields {
  template <class O, class F>
  static void options(O& o, F&& f) {
    f("lr", o.lr()), f("betas", o.betas()), f("eps", o.eps()), f("weight_decay", o.weight_decay()),
        f("amsgrad", o.amsgrad());
  }
  template <class S, class F>
  static void state(S& s, F&& f) {
    f("step", s.step(), kRequired), f("exp_avg", s.exp_avg(), kRequired), f("exp_avg_sq", s.exp_avg_sq(), kRequired),
        f("max_exp_avg_sq", s.max_exp_avg_sq(), kOptional);
  }
};
struct SgdFields {
  template <class O, class F>
  static void options(O& o, F&& f) {
    f("lr", o.lr()), f("momentum", o.momentum()), f("dampening", o.dampening()), f("weight_decay", o.weight_decay()),
        f("nesterov", o.nesterov());
  }
  template <class S, class F>
  static void state(S& s, F&& f) {
    f("momentum_buffer", s.momentum_buffer(), kRequired);
  }
};
struct RmspropFields {
  template <class O, class F>
  static void options(O& o, F&& f) {
    f("lr", o.lr()), f("alpha", o.alpha()), f("eps", o.eps()), f("weight_decay", o.weight_decay()),
        f("momentum", o.momentum()), f("centered", o.centered());
  }
  template <class S, class F>
  static void state(S& s, F&& f) {
    f("step", s.step(), kRequired), f("square_avg", s.square_avg(), kRequired),
        f("momentum_buffer", s.momentum_buffer(), kOptional), f("grad_avg", s.grad_avg(), kOptional);
  }
};
struct AdagradFields {
  template <class O, class F>
  static void options(O& o, F&& f) {
    f("lr", o.lr()), f("lr_decay", o.lr_decay()), f("weight_decay", o.weight_decay()),
        f("initial_accumulator_value", o.initial_accumulator_value()), f("eps", o.eps());
  }
  template <class S, class F>
  static void state(S& s, F&& f) {
    f("step", s.step(), kRequired), f("sum", s.sum(), kRequired);
  }
};

std::string tensor_name(size_t index, const char* field) { return "state." + std::to_string(index) + "." + field; }

// Writing and reading one family; the JSON and tensor layout is common.
class Family {
 public:
  virtual ~Family() = default;
  virtual const char* name() const = 0;
  virtual bool owns(const torch::optim::OptimizerOptions& options) const = 0;
  virtual json options_json(torch::optim::OptimizerOptions& options) const = 0;
  virtual void read_options(torch::optim::OptimizerOptions& options, const json& j) const = 0;
  virtual json write_state(torch::optim::OptimizerParamState& state, size_t index,
                           safetensors::NamedTensors& tensors) const = 0;
  virtual std::unique_ptr<torch::optim::OptimizerParamState> read_state(const json& scalars,
                                                                        const safetensors::OrderedTensors& tensors,
                                                                        size_t index, const torch::Tensor& param,
                                                                        const std::string& source) const = 0;
};

template <class Options, class State, class Fields>
class FamilyOf : public Family {
 public:
  explicit FamilyOf(const char* name) : name_(name) {}
  const char* name() const override { return name_; }
  bool owns(const torch::optim::OptimizerOptions& options) const override {
    return dynamic_cast<const Options*>(&options) != nullptr;
  }

  json options_json(torch::optim::OptimizerOptions& options) const override {
    json j = json::object();
    Fields::options(static_cast<Options&>(options), [&](const char* key, auto& value) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (std::is_same_v<T, std::tuple<double, double>>) {
        j[key] = {std::get<0>(value), std::get<1>(value)};
      } else {
        j[key] = value;
      }
    });
    return j;
  }

  void read_options(torch::optim::OptimizerOptions& options, const json& j) const override {
    Fields::options(static_cast<Options&>(options), [&](const char* key, auto& value) {
      using T = std::decay_t<decltype(value)>;
      ACCEL_CHECK(j.contains(key), "option '", key, "' is missing");
      const auto& v = j.at(key);
      if constexpr (std::is_same_v<T, std::tuple<double, double>>) {
        ACCEL_CHECK(v.is_array() && v.size() == 2 && v[0].is_number() && v[1].is_number(), "option '", key, "' is ",
                    json_excerpt(v), ", expected [number, number]");
        value = {v[0].get<double>(), v[1].get<double>()};
      } else if constexpr (std::is_same_v<T, bool>) {
        ACCEL_CHECK(v.is_boolean(), "option '", key, "' is ", json_excerpt(v), ", expected a boolean");
        value = v.get<bool>();
      } else {
        ACCEL_CHECK(v.is_number(), "option '", key, "' is ", json_excerpt(v), ", expected a number");
        value = v.get<T>();
      }
    });
  }

  json write_state(torch::optim::OptimizerParamState& state, size_t index,
                   safetensors::NamedTensors& tensors) const override {
    json scalars = json::object();
    Fields::state(static_cast<State&>(state), [&](const char* key, auto& value, bool) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (std::is_same_v<T, torch::Tensor>) {
        if (value.defined()) tensors.emplace_back(tensor_name(index, key), value.detach().to(torch::kCPU));
      } else {
        scalars[key] = value;
      }
    });
    return scalars;
  }

  std::unique_ptr<torch::optim::OptimizerParamState> read_state(const json& scalars,
                                                                const safetensors::OrderedTensors& tensors,
                                                                size_t index, const torch::Tensor& param,
                                                                const std::string& source) const override {
    auto state = std::make_unique<State>();
    Fields::state(*state, [&](const char* key, auto& value, bool required) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (std::is_same_v<T, torch::Tensor>) {
        const auto name = tensor_name(index, key);
        const auto* saved = tensors.find(name);
        if (!saved) {
          ACCEL_CHECK(!required, "optimizer state '", name, "' is missing from ", source);
          return;
        }
        ACCEL_CHECK(saved->sizes() == param.sizes() && saved->scalar_type() == param.scalar_type(), "optimizer state '",
                    name, "' in ", source, " is ", describe(*saved), ", its parameter is ", describe(param));
        value = torch::empty_like(param, torch::MemoryFormat::Preserve);
        value.copy_(*saved);
      } else {
        const json* v = scalars.is_object() && scalars.contains(key) ? &scalars.at(key) : nullptr;
        // A step count: an integer from 0 to T's largest (no wrap-around of a huge unsigned value).
        const bool fits = v && v->is_number_integer() &&
                          (v->is_number_unsigned()
                               ? v->template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                               : v->template get<int64_t>() >= 0);
        ACCEL_CHECK(fits, "optimizer state of parameter ", index, " in ", source, ": '", key, "' is ",
                    v ? json_excerpt(*v) : std::string("missing"), ", expected an integer from 0 to ",
                    std::to_string(std::numeric_limits<T>::max()));
        value = v->template get<T>();
      }
    });
    return state;
  }

 private:
  static std::string describe(const torch::Tensor& t) { return describe_tensor(t.sizes(), t.scalar_type()); }
  const char* name_;
};

const std::vector<std::unique_ptr<Family>>& families() {
  static const auto all = [] {
    std::vector<std::unique_ptr<Family>> v;
    v.push_back(
        std::make_unique<FamilyOf<torch::optim::AdamWOptions, torch::optim::AdamWParamState, AdamFields>>("AdamW"));
    v.push_back(
        std::make_unique<FamilyOf<torch::optim::AdamOptions, torch::optim::AdamParamState, AdamFields>>("Adam"));
    v.push_back(std::make_unique<FamilyOf<torch::optim::SGDOptions, torch::optim::SGDParamState, SgdFields>>("SGD"));
    v.push_back(
        std::make_unique<FamilyOf<torch::optim::RMSpropOptions, torch::optim::RMSpropParamState, RmspropFields>>(
            "RMSprop"));
    v.push_back(
        std::make_unique<FamilyOf<torch::optim::AdagradOptions, torch::optim::AdagradParamState, AdagradFields>>(
            "Adagrad"));
    return v;
  }();
  return all;
}

const Family& family_of(const torch::optim::Optimizer& optimizer) {
  ACCEL_CHECK_ARG(!optimizer.param_groups().empty(), "optimizer state: the optimizer has no param groups");
  const auto& options = optimizer.param_groups()[0].options();
  for (const auto& f : families())
    if (f->owns(options)) return *f;
  fail<std::invalid_argument>("optimizer state: cannot save or load an optimizer of type ", typeid(optimizer).name(),
                              " (known: Adam, AdamW, SGD, RMSprop, Adagrad and their subclasses)");
}

}  // namespace

OptimizerStateFiles optimizer_state(const torch::optim::Optimizer& optimizer) {
  const Family& family = family_of(optimizer);
  // The field accessors of LibTorch's options and states are non-const
  // references; nothing here writes through them.
  auto& opt = const_cast<torch::optim::Optimizer&>(optimizer);
  OptimizerStateFiles out;
  json groups = json::array(), states = json::object();
  size_t index = 0;
  for (auto& group : opt.param_groups()) {
    json ids = json::array();
    for (auto& p : group.params()) {
      ids.push_back(index);
      auto it = opt.state().find(p.unsafeGetTensorImpl());
      if (it != opt.state().end() && it->second)
        states[std::to_string(index)] = family.write_state(*it->second, index, out.tensors);
      ++index;
    }
    groups.push_back({{"params", ids}, {"options", family.options_json(group.options())}});
  }
  out.json = json{{"format", kFormat}, {"type", family.name()}, {"param_groups", groups}, {"state", states}}.dump();
  return out;
}

// The reading itself; nlohmann's type and missing-key errors escape it.
static void read_optimizer_state(torch::optim::Optimizer& optimizer, const safetensors::OrderedTensors& tensors,
                                 const std::string& text, const std::string& source) {
  const Family& family = family_of(optimizer);
  auto refuse = [&](const auto&... what) {
    fail<std::runtime_error>("cannot load the optimizer state from ", source, ": ", what...);
  };
  json j;
  try {
    j = parse_user_json(text);
  } catch (const std::invalid_argument& e) {
    refuse(e.what());
  }
  if (!j.is_object() || string_member(j, "format") != kFormat)
    refuse("not an accel optimizer state (expected \"format\": \"", kFormat, "\")");
  if (string_member(j, "type") != family.name())
    refuse("it holds a ",
           j.contains("type") && j["type"].is_string() ? excerpt(j["type"].get<std::string>())
                                                       : json_excerpt(j.value("type", json("?"))),
           " state, the optimizer is a ", family.name());
  const auto& groups = j.at("param_groups");
  auto& own_groups = optimizer.param_groups();
  if (!groups.is_array() || groups.size() != own_groups.size())
    refuse(groups.is_array() ? groups.size() : 0, " param groups saved, the optimizer has ", own_groups.size());
  const json& states = j.contains("state") ? j.at("state") : json::object();

  // Everything is built first, so a failure leaves the optimizer as it was.
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> new_options;
  std::vector<std::pair<void*, std::unique_ptr<torch::optim::OptimizerParamState>>> new_states;
  size_t index = 0;
  for (size_t g = 0; g < own_groups.size(); ++g) {
    const auto& saved = groups[g];
    const auto& params = own_groups[g].params();
    if (!saved.contains("params") || !saved.at("params").is_array() || saved.at("params").size() != params.size())
      refuse("param group ", g, " has ",
             saved.contains("params") ? std::to_string(saved.at("params").size()) : std::string("no"),
             " parameters saved, the optimizer's has ", params.size());
    auto options = own_groups[g].options().clone();
    try {
      family.read_options(*options, saved.at("options"));
    } catch (const std::exception& e) {
      refuse("param group ", g, ": ", e.what());
    }
    new_options.push_back(std::move(options));
    for (const auto& p : params) {
      const auto key = std::to_string(index);
      if (states.contains(key)) {
        try {
          new_states.emplace_back(p.unsafeGetTensorImpl(),
                                  family.read_state(states.at(key), tensors, index, p, source));
        } catch (const std::runtime_error& e) {
          refuse(e.what());
        }
      }
      ++index;
    }
  }
  for (size_t g = 0; g < own_groups.size(); ++g) own_groups[g].set_options(std::move(new_options[g]));
  optimizer.state().clear();
  for (auto& [key, state] : new_states) optimizer.state()[key] = std::move(state);
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const safetensors::OrderedTensors& tensors,
                          const std::string& text, const std::string& source) {
  try {
    read_optimizer_state(optimizer, tensors, text, source);
  } catch (const nlohmann::json::exception& e) {
    // A key missing or of another type than written (a hand-edited file).
    fail<std::runtime_error>("cannot load the optimizer state from ", source, ": ", excerpt(e.what(), 200));
  }
}

}  // namespace accel
