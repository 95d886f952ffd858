#include "accel/big_model/model_size.h"

#include <algorithm>
#include <deque>
#include <map>
#include <string_view>

#include "accel/util/check.h"

namespace accel {
namespace {

// The module tree the dotted names describe; node 0 is the model.
struct Tree {
  struct Node {
    std::string name;
    double bytes = 0;  // of every tensor at or below this node
    bool tensor = false;
    std::vector<size_t> children;  // in the order the names first show them
    std::map<std::string, size_t, std::less<>> by_part;
  };
  std::vector<Node> nodes{Node{}};

  void add(const TensorShape& t) {
    const double bytes = static_cast<double>(t.numel()) * float32_model_element_size(t.dtype);
    size_t at = 0;
    nodes[0].bytes += bytes;
    std::string_view rest = t.name;
    while (true) {
      const size_t dot = std::min(rest.find('.'), rest.size());
      const std::string_view part = rest.substr(0, dot);
      ACCEL_CHECK_ARG(!part.empty(), "tensor name '", t.name, "' has an empty part");
      ACCEL_CHECK_ARG(!nodes[at].tensor, "tensor '", t.name, "' lies inside tensor '", nodes[at].name,
                      "': a name is either a tensor or a module");
      auto it = nodes[at].by_part.find(part);
      size_t child;
      if (it != nodes[at].by_part.end()) {
        child = it->second;
      } else {
        child = nodes.size();
        const std::string name = nodes[at].name.empty() ? std::string(part) : nodes[at].name + "." + std::string(part);
        nodes.emplace_back().name = name;
        nodes[at].children.push_back(child);
        nodes[at].by_part.emplace(std::string(part), child);
      }
      nodes[child].bytes += bytes;
      at = child;
      if (dot == rest.size()) break;
      rest.remove_prefix(dot + 1);
    }
    ACCEL_CHECK_ARG(!nodes[at].tensor, "tensor '", t.name, "' is named twice");
    ACCEL_CHECK_ARG(nodes[at].children.empty(), "tensor '", t.name, "' is also the module of '",
                    nodes[nodes[at].children.front()].name, "': a name is either a tensor or a module");
    nodes[at].tensor = true;
  }

  bool has_modules(size_t at) const {
    return std::any_of(nodes[at].children.begin(), nodes[at].children.end(),
                       [&](size_t child) { return !nodes[child].tensor; });
  }
};

// A block of a list (ModuleList, Sequential): its name ends in a number.
bool is_list_block(std::string_view name) {
  const std::string_view last = name.substr(name.rfind('.') + 1);
  return !last.empty() && std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

double float32_model_element_size(torch::ScalarType dtype) {
  if (dtype == torch::kBool) return 0.125;
  if (c10::isFloatingType(dtype)) return 4;
  return static_cast<double>(c10::elementSize(dtype));
}

ModelSize model_size(const TensorShapes& tensors) {
  Tree tree;
  for (const auto& t : tensors) tree.add(t);

  ModelSize out;
  out.total_bytes = tree.nodes[0].bytes;
  // Accelerate's get_max_layer_size, started from the model's own tensors
  // and then its modules (calculate_maximum_sizes).
  std::deque<size_t> to_treat;
  for (size_t child : tree.nodes[0].children)
    if (tree.nodes[child].tensor) to_treat.push_back(child);
  for (size_t child : tree.nodes[0].children)
    if (!tree.nodes[child].tensor) to_treat.push_back(child);
  while (!to_treat.empty()) {
    const size_t at = to_treat.front();
    to_treat.pop_front();
    const auto& node = tree.nodes[at];
    if (!tree.has_modules(at) || is_list_block(node.name)) {
      if (node.bytes > out.largest_layer_bytes) {
        out.largest_layer_bytes = node.bytes;
        out.largest_layers = {node.name};
      } else if (node.bytes == out.largest_layer_bytes) {
        out.largest_layers.push_back(node.name);
      }
      continue;
    }
    // The module's own tensors are left out here, as in Accelerate.
    for (auto child = node.children.rbegin(); child != node.children.rend(); ++child)
      if (!tree.nodes[*child].tensor) to_treat.push_front(*child);
  }
  return out;
}

}  // namespace accel
