#include "accel/unit/checkpoint.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <optional>
#include <utility>

namespace accel {

namespace {

using Run = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// The default generators a block's forward may draw from: the CPU's and
// that of the device its inputs are on.
class RngStates {
 public:
  explicit RngStates(const std::vector<torch::Tensor>& inputs) {
    add(at::detail::getDefaultCPUGenerator());
    for (const auto& t : inputs) {
      if (t.defined() && !t.is_cpu() && t.device().type() != c10::DeviceType::Meta) {
        add(at::globalContext().defaultGenerator(t.device()));
        break;
      }
    }
  }
  // Sets the saved states; returns those they replace.
  RngStates swap_in() const {
    RngStates now;
    for (const auto& [gen, state] : saved_) {
      now.add(gen);
      auto g = gen;
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(state);
    }
    return now;
  }

 private:
  RngStates() = default;
  void add(at::Generator gen) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved_.emplace_back(gen, gen.get_state());
  }
  std::vector<std::pair<at::Generator, at::Tensor>> saved_;
};

class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(std::vector<torch::Tensor> inputs, Run run, RngStates rng)
      : inputs_(std::move(inputs)), run_(std::move(run)), rng_(std::move(rng)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    std::vector<torch::Tensor> leaves;
    leaves.reserve(inputs_.size());
    for (const auto& in : inputs_) {
      if (!in.defined()) {
        leaves.push_back(in);
        continue;
      }
      auto leaf = in.detach();
      leaf.set_requires_grad(in.requires_grad());
      leaves.push_back(leaf);
    }
    torch::Tensor out;
    {
      const RngStates outer = rng_.swap_in();
      torch::AutoGradMode record(true);
      out = run_(leaves);
      outer.swap_in();
    }
    if (out.requires_grad()) torch::autograd::backward({out}, {grads.at(0)});
    torch::autograd::variable_list result;
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (inputs_[i].defined() && inputs_[i].requires_grad()) result.push_back(leaves[i].grad());
    return result;
  }

  void release_variables() override {
    inputs_.clear();
    run_ = nullptr;
  }

  std::string name() const override { return "accel::CheckpointBackward"; }

 private:
  std::vector<torch::Tensor> inputs_;
  Run run_;
  RngStates rng_;
};

}  // namespace

torch::Tensor checkpointed(const std::vector<torch::Tensor>& inputs, Run run) {
  if (!torch::GradMode::is_enabled()) return run(inputs);
  RngStates rng(inputs);
  torch::Tensor out;
  {
    torch::NoGradGuard no_grad;
    out = run(inputs);
    // The output gets this node as its history: it must be a tensor of its
    // own, not one of the inputs or a view made without grad mode.
    bool shared = out.is_view();
    for (const auto& in : inputs) shared = shared || (in.defined() && out.is_same(in));
    if (shared) out = out.clone();
  }
  std::vector<torch::Tensor> needing;
  for (const auto& in : inputs)
    if (in.defined() && in.requires_grad()) needing.push_back(in);
  std::shared_ptr<CheckpointBackward> node(new CheckpointBackward(inputs, std::move(run), std::move(rng)),
                                           torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(needing));
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace accel
