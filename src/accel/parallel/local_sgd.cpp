#include "accel/parallel/local_sgd.h"

#include <exception>
#include <map>
#include <stdexcept>
#include <string>

#include <torch/utils.h>

#include "accel/util/check.h"

namespace accel {

LocalSGD::LocalSGD(Accelerator& accelerator, PreparedModelCore& model, int64_t local_sgd_steps, bool enabled)
    : accelerator_(accelerator),
      model_(model),
      local_sgd_steps_(local_sgd_steps),
      enabled_(enabled && accelerator.use_distributed()),
      no_sync_(enabled_ ? model.ddp() : nullptr) {
  ACCEL_CHECK_ARG(local_sgd_steps >= 1, "LocalSGD: local_sgd_steps must be >= 1, got ", local_sgd_steps);
}

LocalSGD::~LocalSGD() noexcept(false) {
  // Leaving the scope because of an exception: the other ranks may not
  // reach this collective, so do not wait for them.
  if (enabled_ && std::uncaught_exceptions() == 0) average_parameters();
}

void LocalSGD::step() {
  ++num_steps_;
  if (enabled_ && num_steps_ % local_sgd_steps_ == 0) average_parameters();
}

void LocalSGD::average_parameters() {
  torch::NoGradGuard no_grad;
  const auto& group = accelerator_.process_state().process_group();
  // Coalesced per dtype and device: one all-reduce instead of one per tensor.
  std::map<std::pair<std::string, torch::ScalarType>, std::vector<torch::Tensor>> by_kind;
  for (auto& p : model_.module().parameters()) by_kind[{p.device().str(), p.scalar_type()}].push_back(p);
  for (auto& [kind, params] : by_kind) {
    std::vector<torch::Tensor> flats;
    for (auto& p : params) flats.push_back(p.reshape(-1));
    auto flat = torch::cat(flats);
    all_reduce_(flat, ReduceOp::sum, group);
    flat.div_(accelerator_.num_processes());
    int64_t offset = 0;
    for (auto& p : params) {
      p.copy_(flat.narrow(0, offset, p.numel()).view_as(p));
      offset += p.numel();
    }
  }
}

}  // namespace accel
