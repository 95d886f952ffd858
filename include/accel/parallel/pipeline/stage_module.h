#pragma once
// StageModule: a pipeline stage (pipeline/stage.h) as a module, so that the
// Accelerator can prepare it like any model: its parameters are exactly
// the stage's (under their names in the whole model, "transformer.h.1.mlp.
// c_fc.weight"), and its forward runs stage.forward. DDP and ZeRO then
// replicate this rank's part of the model over the data-parallel ranks
// that hold the same part, and an optimizer of stage_module->parameters()
// steps only it.
//
//   auto stage = accel::StageModule(*model, gpt2::pipeline_stage(model, mesh.group("pp")));
//   auto [prepared, optimizer] = accelerator.prepare(stage, std::make_shared<torch::optim::AdamW>(
//       stage->parameters(), torch::optim::AdamWOptions(1e-3)));
//   // the step: accel::pipeline_step (pipeline/accelerated_step.h)
//
// The parameters are the model's own tensors, not copies: preparing the
// stage moves (and, for master weights, casts) them in the model too. The
// model's buffers are not the stage's: move the model to the device before
// cutting it.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "accel/parallel/pipeline/stage.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API StageModuleImpl : public torch::nn::Module {
 public:
  /// `model`: the model `stage` was cut from; each of stage.parameters
  /// must be one of its parameters (else std::invalid_argument naming its
  /// shape and the stage). The model's parameters that the stage does not
  /// hold are not registered.
  StageModuleImpl(torch::nn::Module& model, PipelineStage stage);

  /// One micro-batch through the stage (stage.forward).
  torch::Tensor forward(const torch::Tensor& input);

  PipelineStage& stage() { return stage_; }
  const PipelineStage& stage() const { return stage_; }

 private:
  PipelineStage stage_;
  // Submodule `path` ("transformer.h.1"), made on first use.
  torch::nn::Module& submodule(const std::string& path);
};
TORCH_MODULE(StageModule);

}  // namespace accel
