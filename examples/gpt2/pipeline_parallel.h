#pragma once
// GPT-2 cut into pipeline stages (accel/parallel/pipeline/) by
// configuration: the stage count is the pipeline group's size, and the cut
// falls between blocks (the model's units, "transformer.h.<i>"): evenly,
// or at the given split points.
//
//   stage 0        wte, wpe (embeddings, dropout), its blocks
//   stages 1..p-2  their blocks
//   stage p-1      its blocks, ln_f, and the loss through the output
//                  projection, which is tied to wte: the last stage holds a
//                  copy of wte too, and sum_tied_gradients keeps the two
//                  copies' gradients (so their values) equal
//
// With one stage it is the whole model. Composes with tensor parallelism:
// split the model first (tensor_parallel.h), then cut it.
//
//   gpt2::GPT2 model(gpt2::named_config("tiny"));        // same seed on every rank
//   gpt2::parallelize_tensor(model, mesh.group("tp"));   // optional
//   auto stage = gpt2::pipeline_stage(model, mesh.group("pp"));
//   torch::optim::AdamW opt(stage.parameters, ...);
//
// The parameters of the other stages' parts are released (emptied in
// place): after the cut the model object serves only this stage.
#include <string>
#include <vector>

#include "accel/dist/collectives.h"
#include "accel/parallel/pipeline/stage.h"
#include "accel/parallel/pipeline/stage_cut.h"
#include "model.h"

namespace gpt2 {

/// This rank's stage of `model` over the pipeline group `pp`. forward takes
/// tokens [batch, seq] (int64) on the first stage and the hidden states
/// [batch, seq, n_embd] elsewhere; loss takes the next tokens [batch, seq].
/// `split_points`: where stages 1.. begin ("transformer.h.1"), or empty for
/// an even cut. Throws std::invalid_argument naming the numbers for more
/// stages than blocks, and naming the block for a split point inside one
/// (accel::cut_stages).
accel::PipelineStage pipeline_stage(GPT2& model, const accel::ProcessGroupPtr& pp,
                                    const std::vector<std::string>& split_points = {});

/// The blocks stage `stage` of `stages` runs, as pipeline_stage cuts them.
accel::UnitSpan pipeline_blocks(GPT2& model, int stage, int stages, const std::vector<std::string>& split_points = {});

}  // namespace gpt2
