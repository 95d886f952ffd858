// The Trainer's checkpoints: checkpoint-<global_step> folders (an
// Accelerator save_state folder plus trainer_state.json and
// training_args.json), best-metric tracking, rotation under
// save_total_limit, and the checks on a folder to resume from.
#include <algorithm>
#include <regex>
#include <sstream>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/model_files.h"
#include "accel/trainer/trainer_impl.h"
#include "accel/util/check.h"

namespace accel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateName = "trainer_state.json";
constexpr const char* kArgsName = "training_args.json";

std::optional<int64_t> checkpoint_number(const fs::path& p) {
  static const std::regex re("^checkpoint-([0-9]+)$");
  std::smatch m;
  const std::string name = p.filename().string();
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return std::stoll(m[1].str());
}

std::string join_keys(const Metrics& m) {
  std::ostringstream s;
  for (auto it = m.begin(); it != m.end(); ++it) s << (it == m.begin() ? "" : ", ") << it->first;
  return s.str();
}

}  // namespace

std::vector<fs::path> sorted_checkpoints(const fs::path& dir, const std::optional<std::string>& best) {
  std::vector<std::pair<int64_t, fs::path>> found;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (auto n = checkpoint_number(e.path()); n && e.is_directory()) found.emplace_back(*n, e.path());
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  if (best && out.size() > 1) {
    const fs::path b = fs::path(*best).lexically_normal();
    auto it = std::find_if(out.begin(), out.end(), [&](const fs::path& p) { return p.lexically_normal() == b; });
    if (it != out.end() && it + 1 != out.end()) {  // best just before the newest
      fs::path keep = *it;
      out.erase(it);
      out.insert(out.end() - 1, keep);
    }
  }
  return out;
}

void rotate_checkpoints(const fs::path& dir, std::optional<int64_t> limit, const std::optional<std::string>& best) {
  if (!limit || *limit <= 0) return;
  const auto all = sorted_checkpoints(dir, std::nullopt);
  if (static_cast<int64_t>(all.size()) <= *limit) return;
  std::vector<fs::path> protect{all.back().lexically_normal()};
  if (best) protect.push_back(fs::path(*best).lexically_normal());
  const int64_t keep = std::max<int64_t>(*limit, static_cast<int64_t>(protect.size()));
  int64_t remaining = static_cast<int64_t>(all.size());
  for (const auto& c : all) {
    if (remaining <= keep) break;
    if (std::find(protect.begin(), protect.end(), c.lexically_normal()) != protect.end()) continue;
    fs::remove_all(c);
    --remaining;
  }
}

bool Trainer::Impl::update_best_metric(const Metrics& metrics) {
  if (!args.metric_for_best_model()) return false;
  const std::string key = args.best_metric_key();
  auto it = metrics.find(key);
  ACCEL_CHECK_ARG(it != metrics.end(), "Trainer: metric_for_best_model = '", *args.metric_for_best_model(),
                  "' is not among the evaluation metrics (looked for '", key, "'; they are: ", join_keys(metrics),
                  "); return it from compute_metrics or choose another");
  const bool greater = args.greater_is_better().value_or(false);
  const double value = it->second;
  if (!state.best_metric) state.best_metric = greater ? -INFINITY : INFINITY;
  if (greater ? value > *state.best_metric : value < *state.best_metric) {
    state.best_metric = value;
    if (args.save_strategy() != IntervalStrategy::no) state.best_global_step = state.global_step;
    return true;
  }
  return false;
}

void Trainer::Impl::save_model(const fs::path& dir) {
  // Every process calls both: state() gathers under parameter sharding, and
  // save_model writes from the main process, then waits for all (calling it
  // from the main process alone left the others a barrier short).
  ::accel::save_model(model.core->state(), dir, SaveModelOptions());
}

void Trainer::Impl::save_checkpoint() {
  const fs::path run_dir = args.output_dir();
  const fs::path out = run_dir / ("checkpoint-" + std::to_string(state.global_step));
  if (args.save_only_model()) {
    save_model(out);
  } else {
    accelerator->save_state(out);
  }
  if (state.best_global_step) {
    const fs::path best = run_dir / ("checkpoint-" + std::to_string(*state.best_global_step));
    if (fs::exists(best)) state.best_model_checkpoint = best.string();
  }
  state.stateful_callbacks.clear();
  state.stateful_callbacks["TrainerControl"] = control.state_json();
  for (const auto& c : callbacks)
    if (auto s = c->exported_state()) state.stateful_callbacks[s->first] = s->second;
  if (accelerator->is_main_process()) {
    write_file_atomic(out / kArgsName, args.to_json_string());
    // Written last: a folder without it is not a complete checkpoint.
    write_file_atomic(out / kStateName, state.to_json());
    rotate_checkpoints(run_dir, args.save_total_limit(), state.best_model_checkpoint);
  }
  accelerator->wait_for_everyone();
}

fs::path Trainer::Impl::resolve_checkpoint(const std::string& which) const {
  fs::path dir;
  if (which == "last") {
    const auto all = sorted_checkpoints(args.output_dir(), std::nullopt);
    ACCEL_CHECK_ARG(!all.empty(), "Trainer: resume_from_checkpoint = last, but output_dir '", args.output_dir(),
                    "' holds no checkpoint-<step> folder");
    dir = all.back();
  } else {
    dir = which;
  }
  ACCEL_CHECK_ARG(fs::is_directory(dir), "Trainer: resume_from_checkpoint '", dir.string(), "' is not a folder");
  ACCEL_CHECK_ARG(fs::exists(dir / kStateName), "Trainer: resume_from_checkpoint '", dir.string(),
                  "' is not a Trainer checkpoint (it has no ", kStateName,
                  ": not written by Trainer, or its save did not finish)");
  ACCEL_CHECK_ARG(fs::exists(dir / "accel_state.json"), "Trainer: resume_from_checkpoint '", dir.string(),
                  "' holds the model only (saved with save_only_model), not the optimizer and random states a "
                  "resume needs");
  return dir;
}

void Trainer::Impl::load_best_model() {
  const fs::path best = *state.best_model_checkpoint;
  ACCEL_CHECK(fs::exists(best / "model.safetensors"), "Trainer: the best checkpoint '", best.string(),
              "' has no model.safetensors");
  model.core->write_parameters([&] { load_model_weights(*model.module, best); });
  accelerator->wait_for_everyone();
}

}  // namespace accel
