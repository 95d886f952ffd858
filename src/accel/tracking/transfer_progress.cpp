#include "accel/tracking/transfer_progress.h"

#include <optional>
#include <utility>

#include "accel/util/check.h"

namespace accel {

struct TransferProgress::State {
  std::string desc;
  TransferProgressOptions options;
  int64_t expected = 0;
  int64_t moved = 0;
  // Made when `expected` first reaches min_bytes.
  std::optional<ProgressBar> bar;

  void maybe_show() {
    if (bar || expected < options.min_bytes()) return;
    auto bar_options = options.bar();
    bar_options.desc(desc).unit("B").unit_scale(true);
    bar.emplace(expected, std::move(bar_options));
    if (!bar->enabled()) return;
    bar->update(moved);  // what moved before the bar was due
  }
};

namespace {
// The scope open on this thread: file code reports to it without being
// handed it, so save_file and load_file keep their signatures.
thread_local TransferProgress* current = nullptr;
}  // namespace

TransferProgress::TransferProgress(std::string desc, TransferProgressOptions options) {
  ACCEL_CHECK_ARG(options.min_bytes() >= 0, "TransferProgress: min_bytes is ", options.min_bytes(), ", expected >= 0");
  if (current) {
    state_ = current->state_;
    return;
  }
  state_ = std::make_shared<State>();
  state_->desc = std::move(desc);
  state_->options = std::move(options);
  owner_ = true;
  current = this;
}

TransferProgress::~TransferProgress() {
  if (!owner_) return;
  current = nullptr;
  if (state_->bar) state_->bar->close();
}

void TransferProgress::expect(int64_t bytes) {
  if (!current) return;
  auto& state = *current->state_;
  state.expected += bytes;
  if (state.bar)
    state.bar->set_total(state.expected);
  else
    state.maybe_show();
}

void TransferProgress::advance(int64_t bytes) {
  if (!current) return;
  auto& state = *current->state_;
  state.moved += bytes;
  if (state.bar) state.bar->update(bytes);
}

int64_t TransferProgress::expected() const { return state_->expected; }
int64_t TransferProgress::moved() const { return state_->moved; }
bool TransferProgress::shown() const { return state_->bar && state_->bar->enabled(); }

}  // namespace accel
