#include "pipeline_parallel.h"

#include <torch/torch.h>

#include "accel/parallel/tensor/parallelize.h"
#include "accel/util/check.h"

namespace gpt2 {

accel::UnitSpan pipeline_blocks(GPT2& model, int stage, int stages, const std::vector<std::string>& split_points) {
  const auto spans = accel::cut_stages(*model, stages, split_points);
  ACCEL_CHECK_ARG(stage >= 0 && stage < stages, "GPT-2 pipeline: stage ", stage, " is not in [0, ", stages, ")");
  return spans[static_cast<size_t>(stage)];
}

namespace {

// Whether the parameter named `name` belongs to a stage running blocks
// `span` (and the embeddings on the first stage, ln_f and the tied output
// projection on the last).
bool on_stage(const std::string& name, const accel::UnitSpan& span, bool first, bool last) {
  if (name.starts_with("transformer.wte.")) return first || last;
  if (name.starts_with("transformer.wpe.")) return first;
  if (name.starts_with("transformer.ln_f.")) return last;
  const std::string blocks = "transformer.h.";
  ACCEL_CHECK(name.starts_with(blocks), "GPT-2 pipeline: parameter '", name, "' is in no known part of the model");
  const auto index = std::stoll(name.substr(blocks.size()));
  return index >= span.begin && index < span.end;
}

}  // namespace

accel::PipelineStage pipeline_stage(GPT2& model, const accel::ProcessGroupPtr& pp,
                                    const std::vector<std::string>& split_points) {
  accel::PipelineStage stage(pp);
  const auto span = pipeline_blocks(model, stage.index, stage.num_stages, split_points);
  const bool first = stage.is_first(), last = stage.is_last();
  auto transformer = model->transformer;
  stage.device = transformer->wte->weight.device();
  stage.forward = [transformer, span, first, last](const torch::Tensor& input) mutable {
    auto x = first ? transformer->embed(input) : input;
    x = transformer->run_blocks(x, span.begin, span.end);
    return last ? transformer->final_norm(x) : x;
  };
  if (last) {
    stage.loss = [transformer, loss_options = model->loss_options](const torch::Tensor& hidden,
                                                                   const torch::Tensor& targets) mutable {
      return accel::parallel_tied_cross_entropy(hidden, transformer->wte, targets, loss_options);
    };
  }
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    if (on_stage(item.key(), span, first, last)) {
      stage.parameters.push_back(p);
    } else {
      // Another stage's: kept as an empty tensor so names and the module
      // tree stay, without its memory.
      p.set_data(torch::empty({0}, p.options()));
    }
  }
  if (stage.num_stages > 1 && (first || last)) {
    stage.tied = {transformer->wte->weight};
    stage.tied_stage = first ? stage.num_stages - 1 : 0;
  }
  return stage;
}

}  // namespace gpt2
