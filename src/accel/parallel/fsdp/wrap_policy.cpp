#include "accel/parallel/fsdp/wrap_policy.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel::fsdp {

namespace {

bool policy_picks(const ShardingOptions& o, const UnitSlot& unit, int64_t own_numel) {
  switch (o.auto_wrap_policy()) {
    case WrapPolicy::transformer_based: {
      const auto& names = o.transformer_cls_to_wrap();
      return names.empty() ||
             std::any_of(names.begin(), names.end(), [&](const std::string& n) { return unit.matches(n); });
    }
    case WrapPolicy::size_based: return own_numel >= o.min_num_params();
    case WrapPolicy::no_wrap: return false;
  }
  return false;
}

void check_class_names(const std::vector<FoundUnit>& units, const ShardingOptions& o) {
  if (o.auto_wrap_policy() != WrapPolicy::transformer_based) return;
  for (const auto& name : o.transformer_cls_to_wrap()) {
    if (std::any_of(units.begin(), units.end(), [&](const FoundUnit& u) { return u.slot->matches(name); })) continue;
    std::vector<std::string> classes;
    for (const auto& u : units)
      if (std::find(classes.begin(), classes.end(), u.slot->class_name()) == classes.end())
        classes.push_back(u.slot->class_name());
    fail<std::invalid_argument>(
        "transformer_cls_to_wrap (FSDP_TRANSFORMER_CLS_TO_WRAP) names '", name, "', which no unit of the model is; ",
        classes.empty() ? std::string("the model has no units (wrap its blocks in accel::Unit, unit/unit.h)")
                        : "the model's unit classes: " + join(classes));
  }
}

}  // namespace

std::vector<PlannedUnit> plan_units(torch::nn::Module& model, const ShardingOptions& options) {
  const auto units = find_units(model);
  check_class_names(units, options);

  std::unordered_map<const void*, std::string> owner;  // tensor -> path of the unit that holds it
  std::vector<PlannedUnit> picked;
  for (auto it = units.rbegin(); it != units.rend(); ++it) {  // innermost first
    if (it->path.empty()) continue;                           // a unit around the whole model is the root
    PlannedUnit unit{it->path, it->slot, {}};
    std::unordered_set<const void*> own;
    int64_t numel = 0;
    for (const auto& item : it->slot->module().named_parameters(/*recurse=*/true)) {
      const void* key = item.value().unsafeGetTensorImpl();
      if (owner.count(key) || !own.insert(key).second) continue;
      unit.params.emplace_back(it->path + "." + item.key(), item.value());
      numel += item.value().numel();
    }
    if (unit.params.empty() || !policy_picks(options, *it->slot, numel)) continue;
    for (const void* key : own) owner.emplace(key, it->path);
    picked.push_back(std::move(unit));
  }
  std::reverse(picked.begin(), picked.end());

  PlannedUnit root{"", nullptr, {}};
  std::unordered_set<const void*> in_root;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const void* key = item.value().unsafeGetTensorImpl();
    auto it = owner.find(key);
    if (it == owner.end()) {
      if (in_root.insert(key).second) root.params.emplace_back(item.key(), item.value());
      continue;
    }
    // Every name of a unit's parameter must lie inside that unit.
    if (item.key().rfind(it->second + ".", 0) == 0) continue;
    std::string first;
    for (const auto& u : picked)
      if (u.path == it->second)
        for (const auto& [n, t] : u.params)
          if (t.unsafeGetTensorImpl() == key) first = n;
    fail<std::invalid_argument>("parameter sharding: '", first, "' (unit ", it->second, ") is also '", item.key(),
                                "', outside that unit; a weight tied across units cannot be sharded by one of them. "
                                "Keep both places in one unit (or in none: the root), or untie them");
  }
  picked.push_back(std::move(root));
  return picked;
}

}  // namespace accel::fsdp
