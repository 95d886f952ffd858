#include "accel/accelerator.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include <torch/cuda.h>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/dist/collectives.h"
#include "accel/dist/logging.h"
#include "accel/optim/grad_norm.h"
#include "accel/parallel/fsdp/fsdp_replication.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/replication.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/parallel/zero/zero_replication.h"
#include "accel/tracking/trackers.h"
#include "accel/util/check.h"

#ifdef ACCEL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace accel {

std::string to_string(DistributedType type) {
  switch (type) {
    case DistributedType::no: return "NO";
    case DistributedType::multi_cpu: return "MULTI_CPU";
    case DistributedType::multi_gpu: return "MULTI_GPU";
  }
  return "?";
}

namespace {
ProcessState& state_for(const std::optional<bool>& cpu) {
  if (!ProcessState::initialized()) {
    return ProcessState::init(StateOptions().cpu(cpu));
  }
  auto& st = ProcessState::get();
  ACCEL_CHECK_STATE(!cpu.value_or(false) || st.device().is_cpu(),
                    "Accelerator: cpu was requested but the process state already runs on ", st.device().str(),
                    "; create the Accelerator before anything uses the process state");
  return st;
}

bool has_dim(const DeviceMesh& mesh, const std::string& dim) {
  const auto names = mesh.dim_names();
  return std::find(names.begin(), names.end(), dim) != names.end();
}

// Whether the mesh splits the model itself (tensor or pipeline parallel)
// rather than only the data.
bool splits_model(const ParallelismConfig& c) { return c.tp_size > 1 || c.pp_size > 1; }

// Whether ranks of one data-parallel replica share its batches: tp and pp
// ranks hold parts of the model, cp ranks parts of each sequence.
bool shares_batches(const ParallelismConfig& c) { return splits_model(c) || c.cp_size > 1; }

// ZeRO/FSDP on a mesh of data-parallel dimensions only: FSDP2 shards over
// dp_shard and replicates over dp_replicate (HSDP), which is hybrid_shard
// with dp_shard_size ranks per shard group (the mesh puts dp_shard inside
// dp_replicate, so those ranks are consecutive, as hybrid_shard's are).
// With tensor parallel the ranks of a shard group are not consecutive (tp
// is innermost): the sharding takes the mesh's groups instead
// (replication_on_mesh), so the options stay as given; so with context
// parallel, whose cp ranks join the shard groups; so with pipeline
// parallel, whose stages replicate over "dp" (replication_on_mesh).
ShardingOptions sharding_on_mesh(const ParallelismConfig& c, ShardingOptions sharding) {
  if (!shards_parameters(sharding.strategy()) || c.dp_replicate_size == 1 || shares_batches(c)) return sharding;
  ACCEL_CHECK_ARG(sharding.hybrid_shard_size() == 0 || sharding.hybrid_shard_size() == c.dp_shard_size,
                  "Accelerator: sharding.hybrid_shard_size is ", sharding.hybrid_shard_size(),
                  " but parallelism_config.dp_shard_size is ", c.dp_shard_size,
                  "; expected them equal (or hybrid_shard_size unset)");
  return sharding.strategy(ShardingStrategy::hybrid_shard).hybrid_shard_size(c.dp_shard_size);
}

// On a mesh that splits the model (tensor parallel) or the sequences
// (context parallel), each rank replicates what it holds with the ranks
// holding the same: the data-parallel ranks, and with context parallel the
// cp ranks too ("dp_cp": each cp rank's gradient is its part's, so their
// average is the whole sequence's). DDP or ZeRO-1/2 over those, or FSDP
// over dp_shard (x cp) and dp_replicate.
std::shared_ptr<Replication> replication_on_mesh(const ProcessState& state, const DeviceMesh& mesh,
                                                 const std::optional<ShardingOptions>& sharding,
                                                 const AcceleratorOptions& options, bool master_weights) {
  const std::string holders = mesh.config().cp_size > 1 ? "dp_cp" : "dp";
  const auto dp = has_dim(mesh, holders) ? mesh.group(holders) : ProcessGroupPtr{};
  if (sharding && shards_parameters(sharding->strategy()))
    return std::make_shared<fsdp::FullyShardedReplication>(state, *sharding, mesh);
  if (sharding) return std::make_shared<zero::ZeroReplication>(dp, *sharding);
  return make_data_parallel_replication(dp, options.ddp(), master_weights);
}

// `master_weights`: the model is kept in the mixed-precision dtype and stepped through fp32 masters.
// Under parameter sharding with autocast, the units are gathered in the
// autocast dtype unless the policy says otherwise (Accelerate's FSDP plugin
// sets param_dtype from mixed_precision the same way). On a mesh that
// splits the model, DDP runs over the data-parallel ranks only; with context
// parallel over "dp_cp", since each cp rank's gradient is its part's.
std::shared_ptr<Replication> replication_for(const ProcessState& state, const DeviceMesh* mesh,
                                             std::optional<ShardingOptions> sharding, const AcceleratorOptions& options,
                                             MixedPrecision mixed_precision) {
  const bool master_weights = options.master_weights() && mixed_precision != MixedPrecision::no;
  if (mesh && sharding) sharding = sharding_on_mesh(mesh->config(), *sharding);
  // Under pp each rank prepares its stage (pipeline/stage_module.h), which
  // the sharding splits over the dp_shard ranks of its pp slice like any
  // model on a mesh (replication_on_mesh): one unit, the stage, as the
  // stage holds none of the model's units. What acts on those units would
  // silently do nothing, so it is refused.
  const bool stages = mesh && mesh->config().pp_size > 1 && sharding && shards_parameters(sharding->strategy());
  ACCEL_CHECK_ARG(!stages || sharding->transformer_cls_to_wrap().empty(), "Accelerator: parallelism_config.pp_size is ",
                  mesh ? mesh->config().pp_size : 1, " with sharding.transformer_cls_to_wrap '",
                  sharding && !sharding->transformer_cls_to_wrap().empty() ? sharding->transformer_cls_to_wrap().front()
                                                                           : std::string(),
                  "': each pipeline stage shards as one unit (the units inside a stage are not wrapped yet); "
                  "expected transformer_cls_to_wrap empty (FSDP_TRANSFORMER_CLS_TO_WRAP unset)");
  ACCEL_CHECK_ARG(!stages || !sharding->activation_checkpointing(), "Accelerator: parallelism_config.pp_size is ",
                  mesh ? mesh->config().pp_size : 1,
                  " with sharding.activation_checkpointing: it recomputes the sharded units, and a pipeline stage "
                  "shards as one unit whose blocks are not wrapped; expected activation_checkpointing false");
  if (sharding && shards_parameters(sharding->strategy())) {
    auto& policy = sharding->mixed_precision_policy();
    const auto param_dtype = policy.param_dtype();
    ACCEL_CHECK_ARG(!param_dtype || *param_dtype == torch::kFloat || mixed_precision != MixedPrecision::no,
                    "ShardingOptions: mixed_precision_policy.param_dtype is ", c10::toString(*param_dtype),
                    " but mixed_precision is no; gathering in a lower precision needs autocast (mixed_precision "
                    "fp16 or bf16) for what the root unit computes");
    if (!param_dtype && !master_weights && mixed_precision != MixedPrecision::no)
      policy.param_dtype(autocast_dtype(mixed_precision));
  }
  if (mesh && shares_batches(mesh->config()))
    return replication_on_mesh(state, *mesh, sharding, options, master_weights);
  return make_replication(state, sharding, options.ddp(), master_weights);
}
}  // namespace

Accelerator::Accelerator(AcceleratorOptions options)
    : options_(std::move(options)), project_(options_.project_config()) {
  ACCEL_CHECK_ARG(!project_.total_limit() || *project_.total_limit() >= 1,
                  "Accelerator: project_config.total_limit is ", *project_.total_limit(),
                  ", expected >= 1 (or unset to keep all)");
  ACCEL_CHECK_ARG(project_.iteration() >= 0, "Accelerator: project_config.iteration is ", project_.iteration(),
                  ", expected >= 0");
  tracker_names_ = resolve_tracker_names(options_.log_with());
  for (const auto& tracker : options_.trackers())
    ACCEL_CHECK_ARG(tracker, "Accelerator: options.trackers holds an empty pointer");
  const auto resolved = resolve(options_);
  state_ = &state_for(resolved.cpu);
  if (const auto& c = resolved.parallelism) {
    mesh_ = std::make_shared<DeviceMesh>(*state_, *c);
  }
  mixed_precision_ = resolved.mixed_precision;
  gradient_state_ = std::make_shared<GradientState>(resolved.accumulation);
  sharding_config_ = resolved.sharding_config;
  // A DeepSpeed config's fp16 section is the engine's loss scaler: it wins.
  if (mixed_precision_ == MixedPrecision::fp16)
    scaler_ = std::make_shared<GradScaler>(
        sharding_config_ && sharding_config_->scaler ? *sharding_config_->scaler : options_.scaler(),
        state_->process_group());
  for (const auto& line : resolved.overridden) get_logger("accel").warning(line);
  replication_ = replication_for(*state_, mesh_.get(), resolved.sharding, options_, mixed_precision_);
}

int Accelerator::data_parallel_size() const {
  if (!mesh_) return num_processes();
  return has_dim(*mesh_, "dp") ? mesh_->size("dp") : 1;
}

int Accelerator::data_parallel_index() const {
  if (!mesh_) return process_index();
  return has_dim(*mesh_, "dp") ? mesh_->coordinate("dp") : 0;
}

ProcessGroupPtr Accelerator::data_parallel_group() const {
  if (!mesh_ || !shares_batches(mesh_->config())) return state_->process_group();
  return has_dim(*mesh_, "dp") ? mesh_->group("dp") : ProcessGroupPtr{};
}

// A tensor-parallel model is saved as each rank's slices (checkpoint/
// model_slices.h); what those files cannot hold yet is refused here, before
// anything is written or read.
void Accelerator::check_whole_model_on_each_rank(const char* what) const {
  if (!mesh_ || !shares_batches(mesh_->config())) return;
  // Pipeline stages save as slices, their optimizer state (and fp32
  // masters) by parameter name (accelerator_checkpoint.cpp); fully sharded
  // stages' pieces are not written yet.
  const int pp = mesh_->config().pp_size;
  for (size_t i = 0; i < models_.size() && pp > 1; ++i)
    ACCEL_CHECK_ARG(!models_[i]->sharding(), "Accelerator::", what, ": pp_size ", pp, " with model ", i,
                    " sharded by parameter (full_shard): checkpoints of fully sharded pipeline stages are not "
                    "built yet; expected DDP or ZeRO-1/2 (shard_optimizer, shard_grad_op) on the data-parallel ranks");
  // FSDP on any mesh, ZeRO's shards under tp or cp, and fp32 master weights
  // of a tensor-parallel model save per rank (accelerator_checkpoint.cpp).
  // ZeRO's consolidated state there (gathered over its dp group: a tp
  // rank's slices only) is not built.
  const auto& c = mesh_->config();
  const auto zero_mode = std::dynamic_pointer_cast<zero::ZeroReplication>(replication_);
  ACCEL_CHECK_ARG(!(zero_mode && zero_mode->options().consolidated_checkpoint()), "Accelerator::", what, ": tp_size ",
                  c.tp_size, ", cp_size ", c.cp_size,
                  " with ZeRO and consolidated_checkpoint: a consolidated optimizer state over a mesh is not built "
                  "yet; turn consolidated_checkpoint off (each group's shards are saved), or use full_shard, whose "
                  "checkpoint any layout loads");
}

safetensors::NamedTensors Accelerator::whole_state(const PreparedModelCore& core) const {
  auto state = core.state();
  if (!mesh_ || mesh_->config().tp_size == 1) return state;
  // Under parameter sharding state() holds gathered copies of the slices:
  // the model's own tensors, by name, say how each was cut.
  std::unordered_map<std::string, torch::Tensor> own;
  for (auto& [name, tensor] : model_state(*core.module_ptr())) own.emplace(name, tensor);
  for (auto& [name, tensor] : state) {
    auto it = own.find(name);
    ACCEL_CHECK_STATE(it != own.end(), "Accelerator: '", name, "' is in the model's state but not among its tensors");
    tensor = full_tensor_parallel_parameter(it->second, tensor);
  }
  return state;
}

DistributedType Accelerator::distributed_type() const {
  if (!state_->distributed()) return DistributedType::no;
  return state_->device().is_cuda() ? DistributedType::multi_gpu : DistributedType::multi_cpu;
}

std::shared_ptr<PreparedModelCore> Accelerator::prepare_model_core(std::shared_ptr<torch::nn::Module> module) {
  ACCEL_CHECK_ARG(module, "Accelerator::prepare: the model is empty (a null module holder)");
  std::string meta;  // the first tensor on the meta device (a model built without memory)
  for (const auto& item : module->named_parameters())
    if (meta.empty() && item.value().is_meta()) meta = item.key();
  for (const auto& item : module->named_buffers())
    if (meta.empty() && item.value().is_meta()) meta = item.key();
  if (!replication_->fills_meta_tensors()) {
    // Every process learns which one holds meta tensors, so that all refuse
    // (one process failing alone would leave the others in a collective).
    std::vector<std::string> metas{meta};
    if (const auto& group = state_->process_group()) metas = gather_object(meta, group);
    for (size_t r = 0; r < metas.size(); ++r)
      ACCEL_CHECK_ARG(metas[r].empty(), "Accelerator::prepare: '", metas[r], "' is on the meta device on process ", r,
                      "; only parameter sharding (full_shard, hybrid_shard) gives a model built without memory its "
                      "values from the main process; otherwise materialize it and load its weights first "
                      "(big_model/empty_init.h)");
  }
  if (options_.device_placement()) {
    if (meta.empty()) {
      module->to(device());
    } else {  // Module::to would copy out of the meta tensors: move the others only
      torch::NoGradGuard no_grad;
      for (auto& t : module->parameters())
        if (!t.is_meta() && t.device() != device()) t.set_data(t.to(device()));
      for (auto& t : module->buffers())
        if (!t.is_meta() && t.device() != device()) t.set_data(t.to(device()));
    }
  }
  if (sharding_config_ && sharding_config_->reduce_bucket_size_from_model) {
    // The first model fills the DeepSpeed file's "auto" bucket size, as in
    // Accelerate's prepare(); nothing is replicated yet, so the replication
    // is made again with it.
    fill_from_model(*sharding_config_, *module);
    replication_ = replication_for(*state_, mesh_.get(), sharding_config_->sharding, options_, mixed_precision_);
  }
  if (options_.master_weights() && mixed_precision_ != MixedPrecision::no) {
    // Module::to(dtype) would also cast integer buffers; cast floating ones only.
    const auto dtype = *autocast_dtype(mixed_precision_);
    torch::NoGradGuard no_grad;
    for (auto& p : module->parameters())
      if (p.is_floating_point()) p.set_data(p.to(dtype));
    for (auto& b : module->buffers())
      if (b.is_floating_point()) b.set_data(b.to(dtype));
  }
  auto replica = replication_->prepare_model(module);
  auto core = std::make_shared<PreparedModelCore>(std::move(module), device(), mixed_precision_, std::move(replica.ddp),
                                                  std::move(replica.sharding));
  models_.push_back(core);
  return core;
}

std::shared_ptr<AcceleratedOptimizer> Accelerator::prepare_optimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer) {
  ACCEL_CHECK_ARG(optimizer, "Accelerator::prepare: the optimizer is null");
  if (sharding_config_) check_optimizer(*sharding_config_, *optimizer);
  // The engine's own clipping knows no mesh: it would take each tensor-
  // parallel slice's gradient for the whole parameter's.
  ACCEL_CHECK_ARG(!sharding_config_ || !sharding_config_->gradient_clipping || !mesh_ || !splits_model(mesh_->config()),
                  "Accelerator::prepare: the DeepSpeed config's gradient_clipping (",
                  sharding_config_ && sharding_config_->gradient_clipping ? *sharding_config_->gradient_clipping : 0.0,
                  ") with tp_size ", mesh_ ? mesh_->config().tp_size : 1, " and pp_size ",
                  mesh_ ? mesh_->config().pp_size : 1,
                  " is not built yet; expected no gradient_clipping in the config, and clip_grad_norm_ (under pp: "
                  "clip_pipeline_grad_norm_) called in the training loop (it sums the slices over the tp ranks)");
  // The model's parameters, before master weights or ZeRO stand in for them.
  std::vector<torch::Tensor> model_parameters;
  for (const auto& group : optimizer->param_groups())
    model_parameters.insert(model_parameters.end(), group.params().begin(), group.params().end());
  auto tensors = replication_->prepare_optimizer(*optimizer, models_);
  auto opt = std::make_shared<AcceleratedOptimizer>(std::move(optimizer), gradient_state_, scaler_, std::move(tensors),
                                                    options_.fused_optimizer_step());
  if (sharding_config_ && sharding_config_->gradient_clipping)
    opt->clip_grad_norm_each_step(*sharding_config_->gradient_clipping, std::move(model_parameters));
  optimizers_.push_back(opt);
  return opt;
}

namespace {
SchedulerStepping stepping_of(const AcceleratorOptions& o, int num_processes) {
  return SchedulerStepping{num_processes, o.split_batches(), o.step_scheduler_with_optimizer()};
}
}  // namespace

std::shared_ptr<AcceleratedScheduler> Accelerator::prepare_scheduler(std::shared_ptr<LRScheduler> scheduler) {
  auto s = std::make_shared<AcceleratedScheduler>(std::move(scheduler), optimizers_, gradient_state_,
                                                  stepping_of(options_, data_parallel_size()));
  schedulers_.push_back(s);
  return s;
}

std::shared_ptr<AcceleratedScheduler> Accelerator::prepare_scheduler(
    std::shared_ptr<torch::optim::LRScheduler> scheduler) {
  auto s = std::make_shared<AcceleratedScheduler>(std::move(scheduler), optimizers_, gradient_state_,
                                                  stepping_of(options_, data_parallel_size()));
  schedulers_.push_back(s);
  return s;
}

void Accelerator::check_training_batch_size(int64_t total_batch_size) {
  // The first loader with a fixed batch size is the training one (as in
  // Accelerate, DeepSpeed's batch sizes describe training only).
  if (!sharding_config_ || training_batch_checked_ || total_batch_size <= 0) return;
  check_batch_sizes(*sharding_config_, total_batch_size / data_parallel_size(), gradient_accumulation_steps(),
                    data_parallel_size());
  training_batch_checked_ = true;
}

PrepareOptions Accelerator::loader_options() const {
  PrepareOptions o;
  o.split_batches(options_.split_batches())
      .even_batches(options_.even_batches())
      .dispatch_batches(options_.dispatch_batches())
      .seed(options_.data_seed())
      .non_blocking(options_.non_blocking());
  if (options_.device_placement()) o.device(device());
  if (mesh_) o.num_processes(data_parallel_size()).process_index(data_parallel_index()).every_process_prepares(true);
  return o;
}

void Accelerator::backward(const torch::Tensor& loss, bool retain_graph) {
  auto l = loss;
  if (gradient_state_->num_steps() > 1) l = l / static_cast<double>(gradient_state_->num_steps());
  if (scaler_) l = scaler_->scale(l);
  l.backward({}, retain_graph);
}

void Accelerator::unscale_gradients(AcceleratedOptimizer* optimizer) {
  // Unscaling a partial accumulation would mix scaled and unscaled sums in
  // the next backward: only the batch that syncs is final.
  if (!sync_gradients()) return;
  if (optimizer) {
    optimizer->unscale_gradients();
    return;
  }
  for (auto& opt : optimizers_) opt->unscale_gradients();
}

namespace {
std::vector<const OptimizerTensors*> holders_of(const std::vector<std::shared_ptr<AcceleratedOptimizer>>& optimizers) {
  std::vector<const OptimizerTensors*> holders;
  for (const auto& opt : optimizers)
    if (auto* t = opt->tensors()) holders.push_back(t);
  return holders;
}

// The gradients of `parameters` on a mesh with tensor parallel, as two
// parts: the tp slices' (their sums summed over the tp ranks) and the
// rest's (equal on every tp rank). Within each, the gradient holders give
// what is sharded over the data-parallel ranks (ZeRO's or FSDP's pieces).
std::vector<GradientPart> tensor_parallel_parts(const std::vector<torch::Tensor>& parameters,
                                                const std::vector<const OptimizerTensors*>& holders,
                                                const DeviceMesh& mesh) {
  std::vector<torch::Tensor> slices, whole;
  for (const auto& p : parameters) (is_tensor_parallel_slice(p) ? slices : whole).push_back(p);
  std::vector<GradientPart> parts(2);
  parts[0].grads = ::accel::gradients_of(whole, holders);
  parts[1].grads = ::accel::gradients_of(slices, holders);
  parts[1].split_over = mesh.group("tp");
  return parts;
}
}  // namespace

GradientSet Accelerator::gradients_of(const std::vector<torch::Tensor>& parameters) const {
  // Each parameter's gradient as the optimizer that owns it holds it (an
  // fp32 master's, a ZeRO slice's piece), else its own.
  const auto holders = holders_of(optimizers_);
  if (!mesh_ || mesh_->config().tp_size == 1) return ::accel::gradients_of(parameters, holders);
  // Every gradient, for uses that take them one element at a time (value
  // clipping); norms take the parts above.
  auto parts = tensor_parallel_parts(parameters, holders, *mesh_);
  GradientSet out;
  for (auto& part : parts) {
    part.grads.expand_summaries();
    for (auto* list : {&part.grads.replicated, &part.grads.sharded})
      out.replicated.insert(out.replicated.end(), list->begin(), list->end());
  }
  return out;
}

torch::Tensor Accelerator::clip_grad_norm_(const std::vector<torch::Tensor>& parameters, double max_norm,
                                           double norm_type) {
  // Each rank holds one stage's gradients: the norm needs the stages'.
  ACCEL_CHECK_ARG(!mesh_ || mesh_->config().pp_size == 1, "Accelerator::clip_grad_norm_: pp_size is ",
                  mesh_ ? mesh_->config().pp_size : 1,
                  "; each rank holds one stage's gradients, expected accel::clip_pipeline_grad_norm_ "
                  "(parallel/pipeline/accelerated_step.h), which sums the norm over the stages");
  unscale_gradients();
  // Clipped for this step: an optimizer that clips at each step leaves these.
  if (sync_gradients())
    for (auto& opt : optimizers_) opt->note_user_clip(parameters);
  if (!mesh_ || mesh_->config().tp_size == 1) {
    auto grads = gradients_of(parameters);
    return ::accel::clip_grad_norm_(grads, max_norm, norm_type);
  }
  // A tensor-parallel slice's gradient is a piece of the whole parameter's:
  // its sums are added over the tp ranks; the rest is replicated there.
  auto parts = tensor_parallel_parts(parameters, holders_of(optimizers_), *mesh_);
  return ::accel::clip_grad_norm_(parts, max_norm, norm_type);
}

void Accelerator::clip_grad_value_(const std::vector<torch::Tensor>& parameters, double clip_value) {
  unscale_gradients();
  auto grads = gradients_of(parameters);
  ::accel::clip_grad_value_(grads, clip_value);
}

CapturedStep Accelerator::capture_step(CapturedStep::Function fn, CaptureOptions capture_options) {
  const bool capture = capture_options.cuda_graph().value_or(options_.cuda_graph()) && device().is_cuda();
  if (capture) {
    ACCEL_CHECK_ARG(gradient_state_->num_steps() <= 1, "Accelerator::capture_step: gradient_accumulation_steps is ",
                    gradient_state_->num_steps(),
                    ", expected 1 with cuda_graph (a graph replays one batch per step: use a larger batch, or turn "
                    "cuda_graph off)");
    ACCEL_CHECK_ARG(!use_distributed(), "Accelerator::capture_step: cuda_graph with ", num_processes(),
                    " processes is not supported yet (capturing DDP's all-reduce has not been verified on several "
                    "GPUs); expected one process, or cuda_graph off");
  }
  return CapturedStep(std::move(fn), optimizers_, gradient_state_, capture, capture_options);
}

bool Accelerator::can_capture_step() const {
  return device().is_cuda() && gradient_state_->num_steps() <= 1 && !use_distributed() &&
         mixed_precision() != MixedPrecision::fp16 &&
         std::all_of(optimizers_.begin(), optimizers_.end(), [](const auto& o) { return o->steps_on_device(nullptr); });
}

void Accelerator::wait_for_everyone() const {
  for (const auto& o : optimizers_) o->finish_pending_step();
  ::accel::wait_for_everyone();
}

// On a mesh that splits the model, the ranks of one data-parallel replica
// computed the same predictions: only the data-parallel ranks' are gathered.
torch::Tensor Accelerator::gather_for_metrics(const torch::Tensor& tensor) const {
  const auto group = data_parallel_group();
  if (mesh_ && !group)
    return drop_duplicates(tensor.dim() == 0 ? tensor.reshape({1}) : tensor, gradient_state_->progress());
  return ::accel::gather_for_metrics(tensor, gradient_state_->progress(), group);
}

TensorDict Accelerator::gather_for_metrics(const TensorDict& tensors) const {
  TensorDict out;
  for (const auto& [name, t] : tensors) out.emplace(name, gather_for_metrics(t));
  return out;
}

void Accelerator::set_trigger() { trigger_ = torch::ones({}, torch::TensorOptions(torch::kLong).device(device())); }

bool Accelerator::check_trigger() {
  if (!trigger_.defined()) trigger_ = torch::zeros({}, torch::TensorOptions(torch::kLong).device(device()));
  if (::accel::reduce(trigger_, ReduceOp::sum).item<int64_t>() < 1) return false;
  trigger_ = torch::zeros_like(trigger_);
  return true;
}

void Accelerator::save(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::filesystem::path& path) const {
  if (is_main_process()) safetensors::save_file(tensors, path);
}

void Accelerator::free_memory() {
  custom_.clear();
  loaders_.clear();
  schedulers_.clear();
  optimizers_.clear();
  models_.clear();
#ifdef ACCEL_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace accel
