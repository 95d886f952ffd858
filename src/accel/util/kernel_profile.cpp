#include "accel/util/kernel_profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include "accel/util/check.h"

namespace accel {

namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;

bool active = false;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::set<ActivityType> activities() {
  std::set<ActivityType> a{ActivityType::CPU};
  if (torch::cuda::is_available()) a.insert(ActivityType::CUDA);
  return a;
}

void synchronize() {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
}

}  // namespace

std::string KernelSummary::table(int rows) const {
  std::ostringstream out;
  char line[512];
  std::snprintf(line, sizeof line, "wall %.2f ms, GPU busy %.2f ms (%.0f%%), GPU activities %lld\n", wall_ms,
                device_busy_ms, wall_ms > 0 ? 100.0 * device_busy_ms / wall_ms : 0.0, static_cast<long long>(launches));
  out << line;
  std::snprintf(line, sizeof line, "%10s %7s %6s  %s\n", "ms", "calls", "busy%", "kernel");
  out << line;
  for (int i = 0; i < rows && i < static_cast<int>(kernels.size()); ++i) {
    const auto& k = kernels[static_cast<size_t>(i)];
    std::string name = k.name.size() > 110 ? k.name.substr(0, 107) + "..." : k.name;
    std::snprintf(line, sizeof line, "%10.3f %7lld %6.1f  %s\n", k.total_ms, static_cast<long long>(k.calls),
                  device_busy_ms > 0 ? 100.0 * k.total_ms / device_busy_ms : 0.0, name.c_str());
    out << line;
  }
  return out.str();
}

KernelProfile::KernelProfile() {
  ACCEL_CHECK_STATE(!active, "KernelProfile: a profile is already recording in this process");
  const prof::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  synchronize();
  prof::prepareProfiler(config, activities());
  prof::enableProfiler(config, activities());
  active = running_ = true;
  start_ns_ = now_ns();
}

KernelProfile::~KernelProfile() {
  if (running_) {
    try {
      prof::disableProfiler();
    } catch (...) {
    }
    active = false;
  }
}

KernelSummary KernelProfile::stop(const std::optional<std::string>& trace_path) {
  ACCEL_CHECK_STATE(running_, "KernelProfile::stop: the profile was already stopped");
  synchronize();
  KernelSummary s;
  s.wall_ms = static_cast<double>(now_ns() - start_ns_) / 1e6;
  auto result = prof::disableProfiler();
  running_ = active = false;

  std::map<std::string, KernelTime> by_name;
  std::vector<std::pair<uint64_t, uint64_t>> intervals;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    auto& k = by_name[e.name()];
    k.name = e.name();
    k.calls += 1;
    k.total_ms += static_cast<double>(e.durationNs()) / 1e6;
    s.device_sum_ms += static_cast<double>(e.durationNs()) / 1e6;
    intervals.emplace_back(e.startNs(), e.endNs());
  }
  s.launches = static_cast<int64_t>(intervals.size());
  std::sort(intervals.begin(), intervals.end());
  uint64_t busy = 0, open_start = 0, open_end = 0;
  for (const auto& [a, b] : intervals) {
    if (open_end == 0 || a > open_end) {
      busy += open_end - open_start;
      open_start = a;
      open_end = b;
    } else {
      open_end = std::max(open_end, b);
    }
  }
  busy += open_end - open_start;
  s.device_busy_ms = static_cast<double>(busy) / 1e6;
  for (auto& [name, k] : by_name) s.kernels.push_back(std::move(k));
  std::sort(s.kernels.begin(), s.kernels.end(), [](const auto& a, const auto& b) { return a.total_ms > b.total_ms; });
  if (trace_path) result->save(*trace_path);
  return s;
}

}  // namespace accel
