#pragma once
// collect_tensors: the tensors inside a forward's result (a tensor, or
// tuples, vectors and maps of them), for code that acts on a module's
// outputs or inputs without knowing their type: DDP's unused-parameter
// search, a unit's backward hooks.
#include <map>
#include <tuple>
#include <type_traits>
#include <utility>
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

/// `value` with its tensors replaced, in collect_tensors' order, by
/// `tensors[next]`, `tensors[next + 1]`, ... (`next` advances past them).
inline torch::Tensor replace_tensors(const torch::Tensor&, const std::vector<torch::Tensor>& tensors, size_t& next) {
  return tensors.at(next++);
}
template <class... Ts>
std::tuple<Ts...> replace_tensors(const std::tuple<Ts...>& t, const std::vector<torch::Tensor>& tensors, size_t& next) {
  // Braced initialisation: the elements are replaced left to right.
  return std::apply([&](const auto&... x) { return std::tuple<Ts...>{replace_tensors(x, tensors, next)...}; }, t);
}
template <class T>
std::vector<T> replace_tensors(const std::vector<T>& v, const std::vector<torch::Tensor>& tensors, size_t& next) {
  std::vector<T> out;
  out.reserve(v.size());
  for (const auto& x : v) out.push_back(replace_tensors(x, tensors, next));
  return out;
}
template <class K, class V>
std::map<K, V> replace_tensors(const std::map<K, V>& m, const std::vector<torch::Tensor>& tensors, size_t& next) {
  std::map<K, V> out;
  for (const auto& [k, v] : m) out.emplace(k, replace_tensors(v, tensors, next));
  return out;
}

/// A caller's tensor variable that a call replaced in place, and its value
/// before: put back once the call is over (ArgumentRestore).
using ReplacedArgument = std::pair<torch::Tensor*, torch::Tensor>;

/// One argument of a call with its tensors replaced (see replace_tensors):
/// an argument holding tensors is passed as a new value, except one passed
/// as a non-const lvalue, whose tensors are assigned in place so that a
/// callee taking it by non-const reference sees them (a container the
/// callee fills, such as a cache, keeps what it wrote). A single tensor
/// variable so replaced is recorded in `restore` (when given), for the
/// caller to get its own tensor back after the call. An argument holding
/// no tensor is forwarded as it is.
template <class Arg>
decltype(auto) replace_argument_tensors(Arg&& arg, const std::vector<torch::Tensor>& tensors, size_t& next,
                                        std::vector<ReplacedArgument>* restore = nullptr) {
  using T = std::remove_reference_t<Arg>;
  std::vector<torch::Tensor> probe;
  if constexpr (!requires { collect_tensors(arg, probe); }) {
    return std::forward<Arg>(arg);
  } else if constexpr (std::is_lvalue_reference_v<Arg> && !std::is_const_v<T>) {
    if constexpr (std::is_same_v<T, torch::Tensor>)
      if (restore) restore->emplace_back(&arg, arg);
    arg = replace_tensors(arg, tensors, next);
    return std::forward<Arg>(arg);
  } else {
    return replace_tensors(arg, tensors, next);
  }
}

/// Puts the recorded tensor variables back when it goes (the call returned or threw).
struct ArgumentRestore {
  std::vector<ReplacedArgument> replaced;
  ArgumentRestore() = default;
  ArgumentRestore(const ArgumentRestore&) = delete;
  ArgumentRestore& operator=(const ArgumentRestore&) = delete;
  ~ArgumentRestore() {
    for (auto& [where, original] : replaced) *where = std::move(original);
  }
};

}  // namespace accel
