#include "accel/data/collate.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {
namespace {
void check_not_empty(size_t n) { ACCEL_CHECK_ARG(n != 0, "default_collate: got 0 examples, expected at least 1"); }
}  // namespace

torch::Tensor default_collate(std::vector<torch::Tensor> examples) {
  check_not_empty(examples.size());
  return torch::stack(examples, 0);
}

TensorDict default_collate(std::vector<TensorDict> examples) {
  check_not_empty(examples.size());
  TensorDict out;
  for (const auto& [key, _] : examples[0]) {
    std::vector<torch::Tensor> column;
    column.reserve(examples.size());
    for (size_t i = 0; i < examples.size(); ++i) {
      auto it = examples[i].find(key);
      ACCEL_CHECK_ARG(it != examples[i].end() && examples[i].size() == examples[0].size(), "default_collate: example ",
                      i, " does not have the keys of example 0 (missing or extra key near '", key, "')");
      column.push_back(it->second);
    }
    out.emplace(key, torch::stack(column, 0));
  }
  return out;
}

torch::Tensor default_collate(std::vector<int64_t> examples) {
  check_not_empty(examples.size());
  return torch::tensor(examples, torch::kInt64);
}

torch::Tensor default_collate(std::vector<double> examples) {
  check_not_empty(examples.size());
  return torch::tensor(examples, torch::kFloat64);
}

}  // namespace accel
