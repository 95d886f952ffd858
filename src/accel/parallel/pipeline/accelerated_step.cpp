#include "accel/parallel/pipeline/accelerated_step.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "accel/optim/grad_norm.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/clip.h"
#include "accel/parallel/pipeline/runner.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/parallel/zero/zero_engine.h"
#include "accel/util/check.h"
#include "p2p.h"

namespace accel {

namespace {

void check_prepared(const Accelerator& accelerator, PreparedModel<StageModule>& stage, const char* what) {
  const auto& models = accelerator.models();
  ACCEL_CHECK_ARG(std::any_of(models.begin(), models.end(), [&](const auto& m) { return m == stage.core_ptr(); }), what,
                  ": the stage was not prepared by this Accelerator (expected accelerator.prepare(stage, ...))");
}

std::vector<const OptimizerTensors*> holders(const Accelerator& accelerator) {
  std::vector<const OptimizerTensors*> out;
  for (const auto& opt : accelerator.optimizers())
    if (auto* t = opt->tensors()) out.push_back(t);
  return out;
}

// Whether a prepared optimizer's ZeRO-2 engine takes the gradients away
// while backward runs (into its reduced slices): then the tied copies'
// gradients cannot be summed after the step, only before their reduction.
bool gradients_leave_in_backward(const Accelerator& accelerator) {
  for (const auto& opt : accelerator.optimizers())
    if (auto* engine = dynamic_cast<const zero::ZeroEngine*>(opt->tensors()))
      if (engine->options().strategy() == ShardingStrategy::shard_grad_op) return true;
  return false;
}

// The tied copies' gradient sums under ZeRO-2. Each stage records the
// gradients its own backwards give its copies (tensor hooks run before the
// engine's post-accumulate hooks take them), then the two stages exchange
// those sums and each feeds the other's through one more backward into its
// copies, which the engine reduces like any other: the slices then hold
// the dp average of (own + other), as sum_tied_gradients gives under DDP.
class TiedGradientRecorder {
 public:
  explicit TiedGradientRecorder(PipelineStage& stage) : stage_(stage) {
    for (size_t i = 0; i < stage_.tied.size(); ++i) {
      auto& p = stage_.tied[i];
      sums_.push_back(torch::zeros_like(p));
      auto* sum = &sums_.back();
      hooks_.push_back(p.register_hook([sum](const torch::Tensor& g) { sum->add_(g); }));
    }
  }
  ~TiedGradientRecorder() { remove_hooks(); }

  void exchange_and_feed() {
    remove_hooks();
    if (stage_.tied.empty()) return;
    pipeline_detail::PendingSends sends;
    for (size_t i = 0; i < sums_.size(); ++i)
      sends.send(stage_.group, sums_[i], stage_.tied_stage, static_cast<int>(i));
    std::vector<torch::Tensor> theirs;
    for (size_t i = 0; i < sums_.size(); ++i)
      theirs.push_back(pipeline_detail::recv_like(stage_.group, sums_[i], stage_.tied_stage, static_cast<int>(i)));
    sends.wait_all();
    torch::autograd::backward(stage_.tied, theirs);
  }

 private:
  void remove_hooks() {
    for (size_t i = 0; i < hooks_.size(); ++i) stage_.tied[i].remove_hook(hooks_[i]);
    hooks_.clear();
  }

  PipelineStage& stage_;
  std::deque<torch::Tensor> sums_;  // stable addresses for the hooks
  std::vector<unsigned> hooks_;
};

// Parameter sharding of the stage (full_shard, hybrid_shard): null otherwise.
fsdp::FullyShardedModel* fully_sharded(PreparedModelCore& core) {
  return dynamic_cast<fsdp::FullyShardedModel*>(core.sharding());
}

// Under parameter sharding every micro-batch's backward keeps its full
// gradients (no_sync: they accumulate in the parameters' .grad), so that
// the tied copies' full sums can be exchanged first; then each unit's
// accumulated gradients are reduce-scattered (and, hybrid, all-reduced
// over the replicas) once for the step, in unit order as the end of a
// backward reduces them: the same on every rank of the shard group, which
// holds the same stage.
void reduce_sharded_step(fsdp::FullyShardedModel& model, PipelineStage& stage) {
  sum_tied_gradients(stage);
  for (const auto& unit : model.units()) unit->reduce_gradients();
}

}  // namespace

torch::Tensor pipeline_step(Accelerator& accelerator, PreparedModel<StageModule>& stage, PipelineScheduleKind schedule,
                            int64_t microbatches, const torch::Tensor& inputs, const torch::Tensor& targets) {
  check_prepared(accelerator, stage, "pipeline_step");
  PipelineStage run = stage->stage();
  ACCEL_CHECK_ARG(!run.is_first() || inputs.defined(), "pipeline_step: stage ", run.index,
                  " is the first and got no inputs");
  ACCEL_CHECK_ARG(!run.is_last() || targets.defined(), "pipeline_step: stage ", run.index,
                  " is the last and got no targets");
  const bool zero2 = gradients_leave_in_backward(accelerator);
  auto* sharded = fully_sharded(stage.core());
  ACCEL_CHECK_STATE(zero2 || sharded || !tied_gradients_hold_a_sum(run), "pipeline_step: stage ", run.index,
                    "'s tied gradients still hold their sum over both stages from an earlier pipeline_step (no "
                    "zero_grad since): another step into them would count the other stage's part twice. Accumulate "
                    "with gradient_accumulation_steps, each pipeline_step inside accelerator.accumulate(stage), or "
                    "in one call (more micro-batches)");
  auto& core = stage.core();
  run.device = accelerator.device();
  // Under gradient accumulation each run's gradient is 1/steps of its own,
  // as Accelerator::backward divides a loss.
  run.loss_divisor = static_cast<double>(accelerator.gradient_accumulation_steps());
  // fp16: the last stage scales each loss as Accelerator::backward does;
  // the earlier stages receive scaled gradients. The optimizers unscale,
  // and the scaler's inf check is reduced over every rank, so all stages
  // skip an overflowing step together.
  if (auto* scaler = accelerator.scaler(); scaler && run.is_last())
    run.loss_scale = scaler->scale(torch::ones({}, torch::TensorOptions().device(run.device)));
  // Through the prepared model: autocast, and what DDP does around a forward.
  // A stage gathered in a lower precision (param_dtype) takes its floating
  // input in that dtype, as FSDP2's cast_forward_inputs casts a module's:
  // a received activation comes in fp32 (the previous stage's output as
  // the prepared model returns it), and CPU layer norms refuse fp32 input
  // with bf16 weights.
  std::optional<torch::ScalarType> cast_inputs;
  if (sharded) {
    const auto& policy = sharded->options().mixed_precision_policy();
    if (policy.cast_forward_inputs() && policy.param_dtype()) cast_inputs = policy.param_dtype();
  } else if (accelerator.options().master_weights() && accelerator.mixed_precision() != MixedPrecision::no) {
    // Master weights hold the stage's parameters in bf16, as the whole
    // model's: its next block would see the previous one's bf16 output, so
    // the received (fp32-converted: exact) activation goes back to bf16.
    for (const auto& p : stage->parameters())
      if (p.is_floating_point()) {
        cast_inputs = p.scalar_type();
        break;
      }
  }
  run.forward = [&stage, cast_inputs](const torch::Tensor& x) {
    return stage(cast_inputs && x.is_floating_point() && x.scalar_type() != *cast_inputs ? x.to(*cast_inputs) : x);
  };
  if (run.is_last()) {
    run.loss = [&accelerator, loss = run.loss](const torch::Tensor& out, const torch::Tensor& target) {
      auto autocast = accelerator.autocast();
      return loss(out, target);
    };
  }
  // DDP: every backward but the step's last accumulates locally; the last
  // one, armed as a forward would arm it, all-reduces the sums. Parameter
  // sharding: every backward accumulates, and the step reduces after the
  // tied copies are summed (reduce_sharded_step). A batch inside no_sync
  // (accumulate) does not reduce at all.
  // Under accumulate() a batch that does not complete the accumulation
  // neither reduces nor sums the tied copies (DDP's flag says so too; ZeRO
  // and a stage without data parallelism have no flag).
  bool* flag = core.sync_flag();
  const bool sync = (flag ? *flag : true) && accelerator.sync_gradients();
  struct Restore {
    bool* flag;
    bool value;
    ~Restore() {
      if (flag) *flag = value;
    }
  } restore{flag, sync};
  if (flag) *flag = false;
  // Parameter sharding: the stage is gathered once for all the step's
  // micro-batches and freed by its last backward (torch.distributed.
  // pipelining sets FSDP's reshard_after_backward for the last one only).
  struct KeepGathered {
    fsdp::FullyShardedModel* model;
    ~KeepGathered() {
      if (model) model->set_reshard_after_backward(true);
    }
  } keep{sharded};
  if (sharded) sharded->set_reshard_after_backward(false);
  run.before_backward = [&core, flag, sync, sharded](const torch::Tensor& output, bool last) {
    if (flag) *flag = last && sync && !sharded;
    if (sharded) sharded->set_reshard_after_backward(last);
    // 1F1B runs two backwards in a row at its end, which a prepared
    // model's forward check (one forward per backward under DDP) would
    // refuse: each backward counts as following its micro-batch's forward.
    // Under parameter sharding this also gathers the stage where it is not
    // (the last stage's loss reads the tied projection before any hook of
    // the stage's output runs).
    core.before_forward();
    if (flag && *flag) {
      std::vector<torch::Tensor> outputs{output};
      core.after_forward(outputs);
    }
  };
  std::optional<TiedGradientRecorder> tied;
  if (zero2) tied.emplace(run);
  auto loss = run_pipeline(run, schedule, microbatches,
                           run.is_first() ? split_microbatches(inputs, microbatches) : std::vector<torch::Tensor>{},
                           run.is_last() ? split_microbatches(targets, microbatches) : std::vector<torch::Tensor>{});
  if (zero2) {
    tied->exchange_and_feed();
  } else if (sharded) {
    if (sync) reduce_sharded_step(*sharded, run);
  } else if (sync) {
    // Inside no_sync the sums wait for the step that reduces: summing the
    // local gradients now would count this part's tied gradients twice.
    sum_tied_gradients(run);
    stage->stage().summed_tied = run.summed_tied;
  }
  return loss;
}

torch::Tensor clip_pipeline_grad_norm_(Accelerator& accelerator, PreparedModel<StageModule>& stage, double max_norm,
                                       double norm_type) {
  check_prepared(accelerator, stage, "clip_pipeline_grad_norm_");
  accelerator.unscale_gradients();
  const auto& s = stage->stage();
  const auto* mesh = accelerator.device_mesh();
  const bool tp = mesh && mesh->config().tp_size > 1;
  // The later stage's tied copies are counted on the earlier stage.
  const bool later = !s.tied.empty() && s.index > s.tied_stage;
  std::vector<torch::Tensor> whole, slices, tied;
  for (const auto& p : s.parameters) {
    const bool is_tied =
        std::any_of(s.tied.begin(), s.tied.end(), [&](const torch::Tensor& t) { return t.is_same(p); });
    if (later && is_tied) {
      tied.push_back(p);
    } else {
      (tp && is_tensor_parallel_slice(p) ? slices : whole).push_back(p);
    }
  }
  const auto held = holders(accelerator);
  std::vector<GradientPart> parts(2);
  parts[0].grads = gradients_of(whole, held);
  parts[1].grads = gradients_of(slices, held);
  if (tp) parts[1].split_over = mesh->group("tp");
  auto uncounted = gradients_of(tied, held);
  return clip_grad_norm_across_stages(parts, uncounted, s.group, max_norm, norm_type);
}

}  // namespace accel
