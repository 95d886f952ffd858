#include "accel/data/batch.h"

#include <stdexcept>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "accel/util/check.h"

namespace accel {

std::vector<torch::Tensor> BatchTraits<TensorDict>::tensors(const TensorDict& b) {
  std::vector<torch::Tensor> out;
  out.reserve(b.size());
  for (const auto& [_, t] : b) out.push_back(t);
  return out;
}

std::vector<std::string> BatchTraits<TensorDict>::names(const TensorDict& b) {
  std::vector<std::string> out;
  out.reserve(b.size());
  for (const auto& [k, _] : b) out.push_back(k);
  return out;
}

TensorDict BatchTraits<TensorDict>::rebuild(const std::vector<std::string>& names, std::vector<torch::Tensor> ts) {
  ACCEL_CHECK_ARG(names.size() == ts.size(), "TensorDict: ", names.size(), " names for ", ts.size(), " tensors");
  TensorDict out;
  for (size_t i = 0; i < names.size(); ++i) out.emplace(names[i], std::move(ts[i]));
  return out;
}

bool pinned_memory_available() {
  static const bool available = torch::cuda::is_available();
  return available;
}

std::string describe_tensors(const std::vector<std::string>& names, const std::vector<torch::Tensor>& tensors) {
  nlohmann::json j;
  j["names"] = names;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors)
    j["tensors"].push_back({{"dtype", static_cast<int>(t.scalar_type())}, {"shape", t.sizes().vec()}});
  return j.dump();
}

std::vector<torch::Tensor> allocate_described(const std::string& description, const torch::Device& device,
                                              std::vector<std::string>& names) {
  auto j = nlohmann::json::parse(description);
  names = j["names"].get<std::vector<std::string>>();
  std::vector<torch::Tensor> out;
  for (const auto& t : j["tensors"]) {
    auto dtype = static_cast<torch::ScalarType>(t["dtype"].get<int>());
    out.push_back(torch::empty(t["shape"].get<std::vector<int64_t>>(), torch::TensorOptions(dtype).device(device)));
  }
  return out;
}

}  // namespace accel
