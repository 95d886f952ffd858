#include "accel/forward_check.h"

#include <stdexcept>

#include <torch/csrc/autograd/engine.h>

#include "accel/util/check.h"

namespace accel {

struct ForwardCheck::State {
  std::string what;
  // Forwards through the wrapper (grad mode on) since the last backward.
  int64_t forwards = 0;
  // An end-of-backward callback is queued for the running backward.
  bool reset_queued = false;
  bool per_backward = true;
};

ForwardCheck::ForwardCheck(torch::nn::Module& module, std::string what, bool per_backward)
    : state_(std::make_shared<State>()) {
  state_->what = std::move(what);
  state_->per_backward = per_backward;
  std::weak_ptr<State> weak = state_;
  for (auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    const unsigned handle = p.register_hook([weak](const torch::Tensor&) {
      auto s = weak.lock();
      if (!s) return;
      ACCEL_CHECK_STATE(s->forwards != 0,
                        "accel: backward reached the parameters of a prepared model whose forward did not run "
                        "through the prepared model, so ",
                        s->what,
                        " did not happen. Was it called as model->forward(x)? Call the prepared model instead: "
                        "model(x) or model.forward(x) (`model->` reaches the module itself, for its members)");
      if (!s->per_backward || s->reset_queued) return;
      s->reset_queued = true;
      // Called from inside the backward: runs once it has finished, so the
      // next backward needs a forward of its own.
      torch::autograd::Engine::get_default_engine().queue_callback([weak] {
        if (auto st = weak.lock()) {
          st->forwards = 0;
          st->reset_queued = false;
        }
      });
    });
    hooks_.emplace_back(p, handle);
  }
}

ForwardCheck::~ForwardCheck() {
  for (auto& [p, handle] : hooks_) p.remove_hook(handle);
}

void ForwardCheck::note_forward() {
  if (torch::GradMode::is_enabled()) ++state_->forwards;
}

}  // namespace accel
