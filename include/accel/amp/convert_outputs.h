#pragma once
// Outputs of a mixed-precision forward, returned in fp32 (Accelerate's
// convert_outputs_to_fp32): the loss computed from them outside the model
// then runs in full precision. Tensors inside tuples, vectors and maps are
// converted; other values pass through unchanged.
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace accel {

inline torch::Tensor outputs_to_fp32(torch::Tensor t) {
  if (t.defined() && (t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16))
    return t.to(torch::kFloat);
  return t;
}
template <class T>
T outputs_to_fp32(T value) {
  return value;
}
template <class... Ts>
std::tuple<Ts...> outputs_to_fp32(std::tuple<Ts...> t) {
  return std::apply([](auto&&... x) { return std::tuple<Ts...>(outputs_to_fp32(std::move(x))...); }, std::move(t));
}
template <class T>
std::vector<T> outputs_to_fp32(std::vector<T> v) {
  for (auto& x : v) x = outputs_to_fp32(std::move(x));
  return v;
}
template <class K, class V>
std::map<K, V> outputs_to_fp32(std::map<K, V> m) {
  for (auto& [k, v] : m) v = outputs_to_fp32(std::move(v));
  return m;
}

}  // namespace accel
