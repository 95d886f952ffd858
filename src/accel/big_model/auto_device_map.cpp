#include "accel/big_model/auto_device_map.h"

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_set>

#include "accel/big_model/module_tree.h"
#include "accel/util/check.h"

// Sizes are counted in bits: Accelerate's sizes are bytes with a bool at 1/8
// byte, so in bits every size is an integer and every comparison exact.

namespace accel {

namespace {

using big_model::ModuleTree;
using Sizes = std::map<std::string, int64_t>;

// Accelerate's dtype_byte_size, in bits.
int64_t dtype_bits(torch::ScalarType dtype) {
  return dtype == torch::kBool ? 1 : static_cast<int64_t>(c10::elementSize(dtype)) * 8;
}

Sizes module_sizes_in_bits(torch::nn::Module& model, const ModuleTree& tree, std::optional<torch::ScalarType> dtype,
                           const std::map<std::string, torch::ScalarType>& special) {
  Sizes sizes;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    int64_t bits;
    if (auto it = special.find(name); it != special.end()) {
      bits = t.numel() * dtype_bits(it->second);
    } else if (!dtype || c10::isIntegralType(t.scalar_type(), /*includeBool=*/true)) {
      bits = t.numel() * dtype_bits(t.scalar_type());
    } else {
      bits = t.numel() * std::min(dtype_bits(*dtype), dtype_bits(t.scalar_type()));
    }
    sizes[""] += bits;
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
      sizes[name.substr(0, dot)] += bits;
    sizes[name] += bits;
  };
  // named_parameters() then named_buffers(), each tensor once.
  for (bool buffers : {false, true}) {
    std::unordered_set<const c10::TensorImpl*> seen;
    for (const auto& [path, module] : tree.modules()) {
      const auto own = buffers ? tree.own_buffers(*module) : tree.own_parameters(*module);
      for (const auto& [name, t] : own)
        if (seen.insert(t.unsafeGetTensorImpl()).second) add(path.empty() ? name : path + "." + name, t);
    }
  }
  return sizes;
}

// What Accelerate's loop treats: a module, or a tensor (module null).
struct Item {
  std::string name;
  torch::nn::Module* module = nullptr;
};

class Planner {
 public:
  Planner(torch::nn::Module& model, const DeviceMapOptions& options)
      : model_(model),
        tree_(model),
        no_split_(options.no_split_module_classes()),
        fallback_(options.fallback_allocation()) {
    check_no_split();
    sizes_ = module_sizes_in_bits(model, tree_, options.dtype(), options.special_dtypes());
    tied_ = find_tied_parameters(model);
    for (const auto& [device, bytes] : resolve_max_memory(options.max_memory())) {
      devices_.push_back(device);
      budget_bits_[device] = bytes * 8;
    }
    if (std::find(devices_.begin(), devices_.end(), "disk") == devices_.end()) devices_.push_back("disk");
    std::vector<std::string> gpus;
    for (const auto& d : devices_)
      if (d != "cpu" && d != "disk") gpus.push_back(d);
    main_devices_ = gpus.empty() ? std::vector<std::string>{"cpu"} : std::vector<std::string>{gpus.front(), "cpu"};
  }

  DeviceMap run() {
    std::deque<Item> todo;
    for (const auto& [name, t] : tree_.own_parameters(model_)) todo.push_back({name, nullptr});
    for (const auto& [name, m] : tree_.children(model_)) todo.push_back({name, m});
    for (const auto& [name, t] : tree_.own_buffers(model_)) todo.push_back({name, nullptr});

    DeviceMap map;
    size_t current = 0;
    std::map<std::string, int64_t> used;
    auto [max_layer, max_layer_names] = max_layer_size(todo);
    check_budgets(max_layer, max_layer_names);

    while (!todo.empty()) {
      Item item = todo.front();
      todo.pop_front();
      const std::string& name = item.name;
      std::erase_if(max_layer_names, [&](const std::string& n) { return n == name || n.starts_with(name + "."); });
      if (max_layer_names.empty()) std::tie(max_layer, max_layer_names) = max_layer_size(modules_only(todo));
      const int64_t module_size = size(name);

      const std::vector<std::string> tied_params = tied_outside(name);

      const std::string& device = devices_[current];
      const bool unlimited = device == "disk";
      int64_t max_size = unlimited ? 0 : budget_bits_.at(device);
      int64_t reserved = 0;
      if (std::find(main_devices_.begin(), main_devices_.end(), device) != main_devices_.end()) {
        max_size -= max_layer;
        reserved = max_layer;
      }
      const auto [size_with_ties, tied_names, tied_modules] = size_with_tied(tied_params, module_size, todo);

      if (unlimited || used[device] + size_with_ties <= max_size) {
        used[device] += size_with_ties;
        map[name] = device;
        for (const auto& tied_name : tied_names) {
          auto it = std::find_if(todo.begin(), todo.end(), [&](const Item& i) { return i.name == tied_name; });
          if (it != todo.end()) todo.erase(it);
          map[tied_name] = device;
        }
        continue;
      }

      if (!tied_params.empty() && used[device] + module_size <= max_size) {
        bool split = false;
        for (size_t k = 0; k < tied_names.size(); ++k) {
          torch::nn::Module* tied_module = tied_modules[k];
          if (!splittable(tied_module)) continue;
          const auto at =
              std::find_if(todo.begin(), todo.end(), [&](const Item& i) { return i.name == tied_names[k]; });
          std::deque<Item> next;
          next.push_back(item);
          next.insert(next.end(), todo.begin(), at);
          for (auto& child : split_into(tied_names[k], *tied_module)) next.push_back(std::move(child));
          next.insert(next.end(), std::next(at), todo.end());
          todo = std::move(next);
          std::tie(max_layer, max_layer_names) = max_layer_size(modules_only(todo));
          split = true;
          break;
        }
        if (split) continue;
      }

      if (used[device] + module_size >= max_size) {
        if (splittable(item.module)) {
          auto children = split_into(name, *item.module);
          todo.insert(todo.begin(), children.begin(), children.end());
          std::tie(max_layer, max_layer_names) = max_layer_size(modules_only(todo));
          continue;
        }
      }

      // Accelerate's fallback_allocation: a device that would get nothing
      // takes the first module still to place (breadth first, splitting
      // what does not fit) that fits beside the largest layer and this item.
      if (fallback_ && used[device] == 0 && !unlimited) {
        const int64_t limit = budget_bits_.at(device) - std::max(max_layer, size_with_ties) - used[device];
        if (auto found = fallback_allocate(todo, limit)) {
          todo.push_front(item);
          todo.push_front(*found);
          continue;
        }
      }

      used[device] += reserved;
      ++current;
      todo.push_front(item);
    }
    return map;
  }

 private:
  int64_t size(const std::string& name) const {
    auto it = sizes_.find(name);
    return it == sizes_.end() ? 0 : it->second;
  }

  bool splittable(torch::nn::Module* module) const {
    return module && !tree_.children(*module).empty() && !tree_.is_class(*module, no_split_);
  }

  // The module's own parameters, then its children, named under `name`.
  std::vector<Item> split_into(const std::string& name, torch::nn::Module& module) const {
    std::vector<Item> out;
    for (const auto& [n, t] : tree_.own_parameters(module)) out.push_back({name + "." + n, nullptr});
    for (const auto& [n, m] : tree_.children(module)) out.push_back({name + "." + n, m});
    return out;
  }

  static std::deque<Item> modules_only(const std::deque<Item>& items) {
    std::deque<Item> out;
    for (const auto& i : items)
      if (i.module) out.push_back(i);
    return out;
  }

  // Parameters tied to ones inside `name` (the names outside it).
  std::vector<std::string> tied_outside(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& group : tied_) {
      const auto inside = [&](const std::string& k) { return (k + ".").find(name + ".") != std::string::npos; };
      if (std::any_of(group.begin(), group.end(), inside) && !std::all_of(group.begin(), group.end(), inside))
        for (const auto& p : group)
          if (!inside(p)) out.push_back(p);
    }
    return out;
  }

  // Accelerate's fallback_allocate: the first item, searching `todo`
  // breadth first and splitting items that do not fit (as the main loop
  // would), whose size with its ties is at most `limit` (bits; negative:
  // none). When found it is taken out of `todo`, its ancestors there
  // replaced by their own parameters and children.
  std::optional<Item> fallback_allocate(std::deque<Item>& todo, int64_t limit) const {
    if (limit < 0) return std::nullopt;
    std::deque<Item> search = todo;
    std::optional<Item> found;
    while (!search.empty()) {
      Item item = search.front();
      search.pop_front();
      const auto [with_ties, names, modules] = size_with_tied(tied_outside(item.name), size(item.name), search);
      if (with_ties <= limit) {
        found = item;
        break;
      }
      if (!splittable(item.module)) continue;
      auto children = split_into(item.name, *item.module);
      search.insert(search.begin(), children.begin(), children.end());
    }
    if (!found) return std::nullopt;
    const std::string& name = found->name;
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
      const std::string parent = name.substr(0, dot);
      auto at = std::find_if(todo.begin(), todo.end(), [&](const Item& i) { return i.name == parent; });
      if (at == todo.end()) continue;
      const Item held = *at;
      auto children = split_into(parent, *held.module);
      at = todo.erase(at);
      todo.insert(at, children.begin(), children.end());
    }
    auto at = std::find_if(todo.begin(), todo.end(), [&](const Item& i) { return i.name == name; });
    ACCEL_CHECK(at != todo.end(), "infer_auto_device_map: fallback module '", name, "' is not among those to place");
    todo.erase(at);
    return found;
  }

  // Accelerate's get_max_layer_size.
  std::pair<int64_t, std::vector<std::string>> max_layer_size(std::deque<Item> todo) const {
    int64_t max = 0;
    std::vector<std::string> names;
    while (!todo.empty()) {
      Item item = todo.front();
      todo.pop_front();
      if (!item.module || tree_.children(*item.module).empty() || tree_.is_class(*item.module, no_split_)) {
        const int64_t s = size(item.name);
        if (s > max) {
          max = s;
          names = {item.name};
        } else if (s == max) {
          names.push_back(item.name);
        }
      } else {
        const auto children = tree_.children(*item.module);
        for (auto it = children.rbegin(); it != children.rend(); ++it)
          todo.push_front({item.name + "." + it->first, it->second});
      }
    }
    return {max, names};
  }

  // Accelerate's get_module_size_with_ties.
  std::tuple<int64_t, std::vector<std::string>, std::vector<torch::nn::Module*>> size_with_tied(
      const std::vector<std::string>& tied_params, int64_t module_size, const std::deque<Item>& todo) const {
    std::vector<std::string> names;
    std::vector<torch::nn::Module*> modules;
    int64_t total = module_size;
    for (const auto& p : tied_params) {
      auto it = std::find_if(todo.begin(), todo.end(), [&](const Item& i) { return p.starts_with(i.name + "."); });
      ACCEL_CHECK_ARG(it != todo.end(), "infer_auto_device_map: parameter '", p,
                      "' is tied to one being placed, but no module still to place holds it");
      names.push_back(it->name);
      modules.push_back(it->module);
      total += size(it->name) - size(p);
    }
    return {total, names, modules};
  }

  void check_no_split() const {
    std::set<std::string> known;
    for (const auto& [path, module] : tree_.modules())
      for (const auto& n : tree_.class_names(*module)) known.insert(n);
    for (const auto& n : no_split_) {
      if (known.count(n)) continue;
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail("infer_auto_device_map: no_split_module_classes names '", n,
           "', which no module of the model is; its classes are: ", list);
    }
  }

  void check_budgets(int64_t max_layer, const std::vector<std::string>& names) const {
    std::string budgets;
    for (const auto& d : devices_) {
      if (d == "disk") continue;
      if (budget_bits_.at(d) >= max_layer) return;
      budgets += (budgets.empty() ? "" : ", ") + d + " " + std::to_string(budget_bits_.at(d) / 8) + " bytes";
    }
    std::string layers;
    for (const auto& n : names) layers += (layers.empty() ? "'" : ", '") + n + "'";
    fail("infer_auto_device_map: max_memory (", budgets.empty() ? "no device but the disk" : budgets,
         ") is too small for the largest layer that cannot be split, ", layers, " (", max_layer / 8,
         " bytes): offloaded layers are brought whole to a device to run");
  }

  torch::nn::Module& model_;
  ModuleTree tree_;
  std::vector<std::string> no_split_;
  bool fallback_ = false;
  Sizes sizes_;
  std::vector<std::vector<std::string>> tied_;
  std::vector<std::string> devices_;
  std::map<std::string, int64_t> budget_bits_;
  std::vector<std::string> main_devices_;
};

void clean_into(DeviceMap& map, const std::string& module_name) {
  const std::string prefix = module_name.empty() ? "" : module_name + ".";
  std::vector<std::string> keys;
  std::set<std::string> values;
  for (const auto& [k, v] : map)
    if (k.starts_with(prefix)) {
      keys.push_back(k);
      values.insert(v);
    }
  if (values.size() == 1 && keys.size() > 1) {
    const std::string device = *values.begin();
    for (const auto& k : keys) map.erase(k);
    map[module_name] = device;
  }
  const size_t depth = module_name.empty() ? 1 : std::count(module_name.begin(), module_name.end(), '.') + 2;
  std::set<std::string> children;
  for (const auto& [k, v] : map) {
    if (!k.starts_with(prefix) || k.size() <= module_name.size()) continue;
    // The first `depth` parts of the name.
    size_t dot = std::string::npos, from = 0;
    for (size_t d = 0; d < depth; ++d) {
      dot = k.find('.', from);
      if (dot == std::string::npos) break;
      from = dot + 1;
    }
    children.insert(dot == std::string::npos ? k : k.substr(0, dot));
  }
  for (const auto& child : children) clean_into(map, child);
}

}  // namespace

std::map<std::string, double> compute_module_sizes(torch::nn::Module& model, std::optional<torch::ScalarType> dtype,
                                                   const std::map<std::string, torch::ScalarType>& special_dtypes) {
  ModuleTree tree(model);
  std::map<std::string, double> bytes;
  for (const auto& [name, bits] : module_sizes_in_bits(model, tree, dtype, special_dtypes))
    bytes[name] = static_cast<double>(bits) / 8;
  return bytes;
}

DeviceMap clean_device_map(DeviceMap map) {
  clean_into(map, "");
  return map;
}

DeviceMap infer_auto_device_map(torch::nn::Module& model, const DeviceMapOptions& options) {
  auto map = Planner(model, options).run();
  return options.clean_result() ? clean_device_map(std::move(map)) : map;
}

}  // namespace accel
