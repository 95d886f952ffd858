#include "accel/tracking/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <optional>

#include "accel/util/check.h"
#include "accel/util/env.h"

namespace accel {
namespace {

using Clock = std::chrono::steady_clock;

std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(text, sizeof text, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return text;
}

// 1536 B -> "1.50KiB": tqdm's unit_scale with a divisor of 1024.
std::string scaled(double value, std::string_view unit) {
  static const char* prefixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
  size_t p = 0;
  while (std::abs(value) >= 1024 && p + 1 < std::size(prefixes)) {
    value /= 1024;
    ++p;
  }
  char text[64];
  if (p == 0)
    std::snprintf(text, sizeof text, "%.0f%.*s", value, static_cast<int>(unit.size()), unit.data());
  else
    std::snprintf(text, sizeof text, "%.2f%s%.*s", value, prefixes[p], static_cast<int>(unit.size()), unit.data());
  return text;
}

std::string rate_text(double rate, std::string_view unit, bool unit_scale) {
  if (unit_scale) return scaled(rate, unit) + "/s";
  char text[64];
  if (rate >= 1 || rate == 0)
    std::snprintf(text, sizeof text, "%.2f%.*s/s", rate, static_cast<int>(unit.size()), unit.data());
  else  // slow loops read better as seconds per unit, as tqdm writes them
    std::snprintf(text, sizeof text, "%.2fs/%.*s", 1 / rate, static_cast<int>(unit.size()), unit.data());
  return text;
}

}  // namespace

bool progress_bars_disabled_by_environment(const EnvLookup& env) {
  return env_bool(env, "ACCEL_DISABLE_PROGRESS_BARS").value_or(false) || env_bool(env, "TQDM_DISABLE").value_or(false);
}

std::string format_progress(std::string_view desc, int64_t done, int64_t total, double elapsed, std::string_view unit,
                            std::string_view postfix, int width, bool unit_scale) {
  const double rate = elapsed > 0 ? done / elapsed : 0;
  std::string prefix = desc.empty() ? "" : std::string(desc) + " ";
  const std::string done_text = unit_scale ? scaled(done, unit) : std::to_string(done);
  const std::string total_text = unit_scale ? scaled(total, unit) : std::to_string(total);
  std::string stats =
      total > 0 ? str(done_text, "/", total_text, " [", clock_text(elapsed), "<",
                      rate > 0 ? clock_text((total - done) / rate) : std::string("?"), ", ")
                : str(done_text, unit_scale ? "" : " ", unit_scale ? "" : unit, " [", clock_text(elapsed), ", ");
  stats += elapsed > 0 ? rate_text(rate, unit, unit_scale) : str("?", unit, "/s");
  if (!postfix.empty()) stats += str(", ", postfix);
  stats += "]";
  if (total <= 0) return prefix + stats;
  const double fraction = std::clamp(static_cast<double>(done) / total, 0.0, 1.0);
  char percent[8];
  std::snprintf(percent, sizeof percent, "%3d%%", static_cast<int>(fraction * 100));
  // The bar takes what the text leaves, in eighths of a cell (tqdm's blocks).
  const int text = static_cast<int>(prefix.size() + 4 + 2 + 1 + stats.size());
  const int cells = std::max(1, std::min(width - text, 50));
  const int eighths = static_cast<int>(fraction * cells * 8);
  static const char* partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  std::string bar;
  for (int i = 0; i < eighths / 8; ++i) bar += "█";
  int used = eighths / 8;
  if (used < cells && eighths % 8) {
    bar += partial[eighths % 8];
    ++used;
  }
  bar.append(cells - used, ' ');
  return prefix + percent + "|" + bar + "| " + stats;
}

struct ProgressBar::State {
  int64_t total;
  ProgressOptions options;
  bool enabled;
  bool terminal;
  int width;
  Clock::time_point start = Clock::now();
  // Unset until the first draw. (Not a time point far in the past: the
  // steady clock counts from boot, so "long ago" would be mere minutes on a
  // machine just started, less than a log's line interval.)
  std::optional<Clock::time_point> last_draw;
  int64_t done = 0;
  std::string postfix;
  bool closed = false;
  std::mutex mutex;

  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start).count(); }

  void draw(bool final) {
    const auto line =
        format_progress(options.desc(), done, total, elapsed(), options.unit(), postfix, width, options.unit_scale());
    if (terminal)
      std::fprintf(options.out(), "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
    else
      std::fprintf(options.out(), "%s\n", line.c_str());
    std::fflush(options.out());
    last_draw = Clock::now();
  }
};

ProgressBar::ProgressBar(int64_t total, ProgressOptions options) : state_(std::make_shared<State>()) {
  ACCEL_CHECK_ARG(options.out(), "ProgressBar: options.out is null");
  ACCEL_CHECK_ARG(options.line_interval() > 0, "ProgressBar: line_interval is ", options.line_interval(),
                  " s, expected > 0");
  state_->total = total;
  state_->enabled = options.enabled().value_or(!progress_bars_disabled_by_environment(process_env()));
  state_->terminal = ::isatty(::fileno(options.out()));
  state_->width = options.width();
  if (const char* columns = std::getenv("COLUMNS"); columns && std::atoi(columns) > 0)
    state_->width = std::atoi(columns);
  state_->options = std::move(options);
  if (state_->enabled && state_->terminal) state_->draw(false);
}

ProgressBar::~ProgressBar() {
  if (state_) close();
}
ProgressBar::ProgressBar(ProgressBar&&) noexcept = default;
ProgressBar& ProgressBar::operator=(ProgressBar&& other) noexcept {
  if (this != &other) {
    if (state_) close();  // the bar replaced ends its line
    state_ = std::move(other.state_);
  }
  return *this;
}

void ProgressBar::update(int64_t n) {
  std::lock_guard lock(state_->mutex);
  if (state_->closed) return;
  state_->done += n;
  if (!state_->enabled) return;
  const auto& last = state_->last_draw;
  if (!last || std::chrono::duration<double>(Clock::now() - *last).count() >=
                   (state_->terminal ? 0.1 : state_->options.line_interval()))
    state_->draw(false);
}

void ProgressBar::set_postfix(std::string postfix) { set_postfix(state_, std::move(postfix)); }

void ProgressBar::set_postfix(const std::shared_ptr<State>& state, std::string postfix) {
  std::lock_guard lock(state->mutex);
  state->postfix = std::move(postfix);
}

void ProgressBar::set_total(int64_t total) {
  std::lock_guard lock(state_->mutex);
  state_->total = total;
}

void ProgressBar::close() {
  std::lock_guard lock(state_->mutex);
  if (state_->closed) return;
  state_->closed = true;
  if (state_->enabled) state_->draw(true);
}

bool ProgressBar::enabled() const { return state_->enabled; }
int64_t ProgressBar::count() const { return state_->done; }

}  // namespace accel
