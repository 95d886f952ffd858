#pragma once
// collect_tensors: the tensors inside a forward's result (a tensor, or
// tuples, vectors and maps of them), for code that acts on a module's
// outputs or inputs without knowing their type: DDP's unused-parameter
// search, a unit's backward hooks.
#include <map>
#include <tuple>
#include <vector>

#include <torch/types.h>

namespace accel {

/// Appends the tensors of `t` to `out`.
inline void collect_tensors(const torch::Tensor& t, std::vector<torch::Tensor>& out) { out.push_back(t); }
template <class... Ts>
void collect_tensors(const std::tuple<Ts...>& t, std::vector<torch::Tensor>& out) {
  std::apply([&](const auto&... x) { (collect_tensors(x, out), ...); }, t);
}
template <class T>
void collect_tensors(const std::vector<T>& v, std::vector<torch::Tensor>& out) {
  for (const auto& x : v) collect_tensors(x, out);
}
template <class K, class V>
void collect_tensors(const std::map<K, V>& m, std::vector<torch::Tensor>& out) {
  for (const auto& [k, v] : m) collect_tensors(v, out);
}

/// Appends the tensors among a call's arguments (`args`) to `out`; an
/// argument of any other type (a number, an options struct) holds none.
template <class... Args>
void collect_argument_tensors(std::vector<torch::Tensor>& out, const Args&... args) {
  auto one = [&](const auto& arg) {
    if constexpr (requires { collect_tensors(arg, out); }) collect_tensors(arg, out);
  };
  (one(args), ...);
}

}  // namespace accel
