#include "accel/parallel/fsdp/paged_adam_state.h"

#include <string>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include "accel/util/check.h"

namespace accel::fsdp {

namespace {

// Page-aligned bytes per piece (StateFile's allocation unit), three fields.
int64_t capacity_of(const ShardedUnit& unit) {
  int64_t bytes = 0;
  for (size_t i = 0; i < unit.parameters().size(); ++i) bytes += StateFile::room_for(unit.piece(i).numel());
  return 3 * bytes;
}

}  // namespace

bool PagedAdamState::supports(const torch::optim::Optimizer& optimizer) {
  return dynamic_cast<const torch::optim::Adam*>(&optimizer) || dynamic_cast<const torch::optim::AdamW*>(&optimizer);
}

PagedAdamState::PagedAdamState(const std::filesystem::path& folder, const std::vector<ShardedUnit*>& units) {
  // Names no other process (another rank, another job on the same drive) gives.
  static int instance = 0;
  const std::string prefix = process_scratch_name() + "_" + std::to_string(instance++) + "_unit";
  for (size_t k = 0; k < units.size(); ++k) {
    auto file = StateFile::create(folder / (prefix + std::to_string(k) + ".state"), capacity_of(*units[k]));
    for (size_t i = 0; i < units[k]->parameters().size(); ++i)
      homes_[units[k]->piece(i).unsafeGetTensorImpl()].file = file.get();
    files_.emplace(units[k], std::move(file));
  }
}

template <typename Options, typename State>
void PagedAdamState::place_all(torch::optim::Optimizer& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const bool amsgrad = static_cast<const Options&>(group.options()).amsgrad();
    for (auto& p : group.params()) {
      auto it = homes_.find(p.unsafeGetTensorImpl());
      if (it == homes_.end()) continue;
      Home& home = it->second;
      const size_t fields = amsgrad ? 3 : 2;
      while (home.fields.size() < fields) home.fields.push_back(home.file->allocate(p.numel()));
      auto& slot = optimizer.state()[p.unsafeGetTensorImpl()];
      if (!slot) {  // the first step: the file's zeros are the state Adam starts from
        if (!home.fresh)
          for (auto& f : home.fields) f.zero_();
        auto st = std::make_unique<State>();
        st->exp_avg(home.fields[0]);
        st->exp_avg_sq(home.fields[1]);
        if (amsgrad) st->max_exp_avg_sq(home.fields[2]);
        slot = std::move(st);
        home.fresh = false;
        continue;
      }
      // State made elsewhere (a load): copied into the file, the file's views kept.
      auto& st = static_cast<State&>(*slot);
      auto adopt = [&](const torch::Tensor& t, const torch::Tensor& into) {
        if (!t.defined() || home.file->holds(t)) return torch::Tensor();
        ACCEL_CHECK_ARG(t.numel() == into.numel(), "paged optimizer state: a state tensor of ", t.numel(),
                        " elements for a parameter piece of ", into.numel());
        into.copy_(t.reshape({-1}));
        return into;
      };
      if (auto t = adopt(st.exp_avg(), home.fields[0]); t.defined()) st.exp_avg(t);
      if (auto t = adopt(st.exp_avg_sq(), home.fields[1]); t.defined()) st.exp_avg_sq(t);
      if (amsgrad)
        if (auto t = adopt(st.max_exp_avg_sq(), home.fields[2]); t.defined()) st.max_exp_avg_sq(t);
      home.fresh = false;
    }
  }
}

void PagedAdamState::place(torch::optim::Optimizer& optimizer) {
  // AdamW first: it is not a subclass of Adam in LibTorch, nor the reverse.
  if (dynamic_cast<torch::optim::AdamW*>(&optimizer))
    place_all<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(optimizer);
  else if (dynamic_cast<torch::optim::Adam*>(&optimizer))
    place_all<torch::optim::AdamOptions, torch::optim::AdamParamState>(optimizer);
  else
    fail("paged optimizer state: the optimizer is neither Adam nor AdamW");
}

void PagedAdamState::prefetch(const ShardedUnit* unit) const {
  if (auto it = files_.find(unit); it != files_.end()) it->second->prefetch();
}

void PagedAdamState::write_back(const ShardedUnit* unit) const {
  if (auto it = files_.find(unit); it != files_.end()) it->second->write_back();
}

}  // namespace accel::fsdp
