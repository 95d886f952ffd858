#pragma once
// fp32 master weights for a model kept in fp16/bf16 (apex's O2). The
// optimizer is given fp32 copies of the parameters in place of the model's
// own; before each step the model's low-precision gradients are copied to
// the masters, and after it the updated masters are rounded back into the
// model. Small updates that fp16/bf16 weights would round away accumulate
// in the masters instead.
//
// Either order of preparation works: a parameter still in fp32 when the
// masters are made is copied as is, and casting the model later keeps its
// tensors' identity (LibTorch's Module::to changes data in place).
#include <unordered_map>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "accel/optim/optimizer_tensors.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API MasterWeights : public OptimizerTensors {
 public:
  /// Replaces every floating-point parameter of `optimizer` with an fp32
  /// master copy; the optimizer must not have stepped yet.
  explicit MasterWeights(torch::optim::Optimizer& optimizer);

  /// master.grad = model.grad in fp32 (undefined where the model has none).
  void copy_grads_to_masters();
  /// model = master, rounded to the model's dtype.
  void copy_masters_to_model();
  /// Clears the model's gradients (the masters' are the optimizer's).
  void zero_model_grads(bool set_to_none) override;

  // OptimizerTensors
  void gradients_to_optimizer() override { copy_grads_to_masters(); }
  void parameters_to_model() override { copy_masters_to_model(); }
  /// The masters' gradients (replicated).
  void collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                         GradientSet& out) const override;

  /// The master standing for `model_param`, or `model_param` itself.
  torch::Tensor master_of(const torch::Tensor& model_param) const;
  const std::vector<torch::Tensor>& model_params() const { return model_; }
  const std::vector<torch::Tensor>& masters() const { return masters_; }

 private:
  std::vector<torch::Tensor> model_;
  std::vector<torch::Tensor> masters_;
  std::unordered_map<const void*, size_t> index_;  // model TensorImpl -> position
};

}  // namespace accel
