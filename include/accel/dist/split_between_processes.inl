#pragma once
// Template part of collectives.h.
#include "accel/state.h"

namespace accel {

template <class T>
std::vector<T> split_between_processes(const std::vector<T>& items, bool apply_padding) {
  auto& st = ProcessState::get();
  const int world = st.world_size();
  if (world == 1) return items;
  const auto n = static_cast<int64_t>(items.size());
  auto [begin, end] = split_range(n, st.rank(), world);
  std::vector<T> out;
  if (begin >= n) {
    // Fewer items than ranks: Accelerate hands the last item to the rest.
    if (n > 0) out.push_back(items.back());
  } else {
    out.assign(items.begin() + begin, items.begin() + end);
  }
  if (apply_padding && !out.empty()) {
    const int64_t target = n / world + (n % world > 0 ? 1 : 0);
    while (static_cast<int64_t>(out.size()) < target) out.push_back(out.back());
  }
  return out;
}

}  // namespace accel
