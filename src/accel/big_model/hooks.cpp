#include "accel/big_model/hooks.h"

#include "accel/util/check.h"

namespace accel {

namespace {

// What a unit with hooks holds: the chain, run in order.
class HookChain : public UnitHooks {
 public:
  explicit HookChain(torch::nn::Module& module) : module_(module) {}
  void pre_forward(const std::vector<torch::Tensor>&) override {}
  void replace_inputs(std::vector<torch::Tensor>& inputs) override {
    for (auto& hook : hooks_) hook->pre_forward(module_, inputs);
  }
  void post_forward(std::vector<torch::Tensor>& outputs) override {
    for (auto& hook : hooks_) hook->post_forward(module_, outputs);
  }
  bool replaces_tensors() const override { return true; }

  std::vector<std::shared_ptr<ModelHook>> hooks_;

 private:
  torch::nn::Module& module_;
};

HookChain* chain_of(const UnitSlot& unit) { return dynamic_cast<HookChain*>(unit.hooks()); }

}  // namespace

ModelHook::~ModelHook() = default;

void add_hook_to_unit(UnitSlot& unit, std::shared_ptr<ModelHook> hook, bool append) {
  ACCEL_CHECK_ARG(hook, "add_hook_to_unit: the hook is null");
  ACCEL_CHECK_STATE(!unit.hooks() || chain_of(unit), "unit ", unit.class_name(),
                    ": another mode (parameter sharding) acts on this unit; it takes no hooks");
  if (!append) remove_hook_from_unit(unit);
  HookChain* chain = chain_of(unit);
  if (!chain) {
    auto made = std::make_shared<HookChain>(unit.module());
    chain = made.get();
    unit.set_hooks(std::move(made));
  }
  hook->init_hook(unit.module());
  chain->hooks_.push_back(std::move(hook));
}

void remove_hook_from_unit(UnitSlot& unit) {
  HookChain* chain = chain_of(unit);
  if (!chain) return;
  auto hooks = std::move(chain->hooks_);
  unit.set_hooks(nullptr);
  for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) (*it)->detach_hook(unit.module());
}

void remove_hook_from_units(torch::nn::Module& model) {
  for (auto& found : find_units(model)) remove_hook_from_unit(*found.slot);
}

std::vector<std::shared_ptr<ModelHook>> hooks_of(const UnitSlot& unit) {
  HookChain* chain = chain_of(unit);
  return chain ? chain->hooks_ : std::vector<std::shared_ptr<ModelHook>>{};
}

}  // namespace accel
