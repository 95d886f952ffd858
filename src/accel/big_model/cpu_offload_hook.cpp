#include "accel/big_model/cpu_offload_hook.h"

#include "accel/big_model/hooks.h"
#include "accel/util/check.h"
#include "accel/util/memory.h"

namespace accel {

namespace {

c10::Device first_parameter_device(torch::nn::Module& module) {
  const auto params = module.parameters();
  ACCEL_CHECK_ARG(!params.empty(), "cpu_offload_with_hook: unit '", module.name(),
                  "' has no parameters, whose device says where the model is");
  return params.front().device();
}

// Accelerate's CpuOffload.
class CpuOffload : public ModelHook {
 public:
  CpuOffload(c10::Device execution_device, std::shared_ptr<UserCpuOffloadHook> prev)
      : execution_device_(execution_device), prev_(std::move(prev)) {}

  void init_hook(torch::nn::Module& module) override { module.to(c10::kCPU); }

  void pre_forward(torch::nn::Module& module, std::vector<torch::Tensor>& inputs) override {
    if (prev_ && first_parameter_device(prev_->model()) != c10::Device(c10::kCPU)) {
      prev_->offload();
      clear_device_cache();
    }
    if (first_parameter_device(module) == execution_device_) return;
    module.to(execution_device_);
    for (auto& t : inputs)
      if (t.defined()) t = t.to(execution_device_);
  }

 private:
  c10::Device execution_device_;
  std::shared_ptr<UserCpuOffloadHook> prev_;
};

}  // namespace

UserCpuOffloadHook::UserCpuOffloadHook(std::shared_ptr<UnitSlot> unit, std::shared_ptr<ModelHook> hook)
    : unit_(std::move(unit)), hook_(std::move(hook)) {}

void UserCpuOffloadHook::offload() { hook_->init_hook(unit_->module()); }

void UserCpuOffloadHook::remove() { remove_hook_from_unit(*unit_); }

std::shared_ptr<UserCpuOffloadHook> cpu_offload_with_hook(const std::shared_ptr<UnitSlot>& model,
                                                          c10::Device execution_device,
                                                          std::shared_ptr<UserCpuOffloadHook> prev_module_hook) {
  ACCEL_CHECK_ARG(model, "cpu_offload_with_hook: the unit is null (pass Unit::slot() of a unit that wraps a module)");
  first_parameter_device(model->module());
  auto hook = std::make_shared<CpuOffload>(execution_device, std::move(prev_module_hook));
  add_hook_to_unit(*model, hook, /*append=*/true);
  return std::make_shared<UserCpuOffloadHook>(model, std::move(hook));
}

}  // namespace accel
