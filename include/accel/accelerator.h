#pragma once
// Accelerator: the one object a training loop talks to. It knows the
// process (rank, device, process group), prepares the model, optimizer,
// scheduler and data loaders for the configured mode, and owns the
// mixed-precision and gradient-accumulation state. It delegates: DDP is
// parallel/ddp.h, autocast and loss scaling amp/, sharding data/prepare.h.
//
//   accel::Accelerator acc;                       // options from `accel launch`
//   auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), 1e-3);
//   auto sched = accel::get_scheduler("linear", *opt, 100, 1000);
//   auto [model, optimizer, scheduler, loader] = acc.prepare(net, opt, sched, train_loader);
//   for (auto& batch : loader) {
//     auto scope = acc.accumulate(model);
//     auto loss = loss_fn(model(batch["x"]), batch["y"]);
//     acc.backward(loss);
//     if (acc.sync_gradients()) acc.clip_grad_norm_(net->parameters(), 1.0);
//     optimizer->step(); scheduler->step(); optimizer->zero_grad();
//   }
#include <filesystem>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "accel/accelerator_options.h"
#include "accel/amp/autocast.h"
#include "accel/amp/grad_scaler.h"
#include "accel/checkpoint/checkpointable.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/project_config.h"
#include "accel/data/data_loader.h"
#include "accel/data/metrics.h"
#include "accel/data/prepare.h"
#include "accel/dist/collectives.h"
#include "accel/dist/goes_first.h"
#include "accel/gradient_state.h"
#include "accel/graph/captured_step.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/optim/accelerated_scheduler.h"
#include "accel/prepared_model.h"
#include "accel/state.h"
#include "accel/tracking/progress.h"
#include "accel/tracking/tracker.h"
#include "accel/util/export.h"

namespace accel {

class DeviceMesh;
class Replication;
class TrackerSet;

/// Accelerate's names for how the model is replicated.
enum class DistributedType { no, multi_cpu, multi_gpu };
ACCEL_API std::string to_string(DistributedType type);

/// Scope of one batch under gradient accumulation (Accelerator::accumulate):
/// backward inside it all-reduces only when the batch completes an
/// accumulation. Discarded at once, it would do nothing: hold it.
class ACCEL_API [[nodiscard]] AccumulateScope {
 public:
  AccumulateScope(AccumulateScope&&) = default;
  AccumulateScope(const AccumulateScope&) = delete;
  AccumulateScope& operator=(const AccumulateScope&) = delete;

 private:
  friend class Accelerator;
  AccumulateScope() = default;
  std::vector<std::unique_ptr<NoSyncGuard>> guards_;
};

template <class T>
struct IsDataLoader : std::false_type {};
template <class B>
struct IsDataLoader<DataLoader<B>> : std::true_type {};

template <class T>
concept Module = std::is_base_of_v<torch::nn::ModuleHolder<typename T::ContainedType>, T>;
template <class T>
concept OptimizerPtr = requires(T t) {
  requires std::is_base_of_v<torch::optim::Optimizer, typename T::element_type>;
};
template <class T>
concept SchedulerPtr = requires(T t) {
  requires std::is_base_of_v<LRScheduler, typename T::element_type> ||
      std::is_base_of_v<torch::optim::LRScheduler, typename T::element_type>;
};

class ACCEL_API Accelerator {
 public:
  /// Initialises the process state (rendezvous) if nothing has yet.
  explicit Accelerator(AcceleratorOptions options = {});

  // --- the process ---------------------------------------------------------
  ProcessState& process_state() const { return *state_; }
  torch::Device device() const { return state_->device(); }
  int num_processes() const { return state_->world_size(); }
  int process_index() const { return state_->rank(); }
  int local_process_index() const { return state_->local_rank(); }
  /// The mesh built from options.parallelism_config (Accelerate's
  /// torch_device_mesh); null when none was configured.
  const DeviceMesh* device_mesh() const { return mesh_.get(); }
  /// The ranks that see different batches: num_processes() without a mesh,
  /// else the mesh's dp_replicate x dp_shard size (tensor-parallel ranks of
  /// one replica share their batches). Prepared loaders, the scheduler's
  /// stepping and gather_for_metrics count these.
  int data_parallel_size() const;
  /// This process's index among them.
  int data_parallel_index() const;
  bool is_main_process() const { return state_->is_main_process(); }
  bool is_local_main_process() const { return state_->is_local_main_process(); }
  bool use_distributed() const { return state_->distributed(); }
  DistributedType distributed_type() const;
  MixedPrecision mixed_precision() const { return mixed_precision_; }
  int64_t gradient_accumulation_steps() const { return gradient_state_->num_steps(); }
  const AcceleratorOptions& options() const { return options_; }

  // --- prepare -------------------------------------------------------------
  /// Prepares each object for the configured mode and returns them in the
  /// order given (one object: returned as is; several: a tuple). Models,
  /// optimizers and loaders go first, so a scheduler knows the optimizers
  /// prepared in the same call.
  template <class... Ts>
  auto prepare(Ts&&... objects) {
    std::tuple first{prepare_first(std::forward<Ts>(objects))...};
    auto done =
        std::apply([this](auto&&... x) { return std::tuple{prepare_second(std::move(x))...}; }, std::move(first));
    if constexpr (sizeof...(Ts) == 1) {
      return std::get<0>(std::move(done));
    } else {
      return done;
    }
  }

  /// The model moved to the device (cast for master weights), rank 0's
  /// parameters and buffers broadcast, wrapped in DDP when distributed
  /// (with options().sharding: not wrapped; the ZeRO engine is built when
  /// its optimizer is prepared, which must come with or after the model).
  template <Module Holder>
  PreparedModel<Holder> prepare_model(Holder module) {
    return PreparedModel<Holder>(module, prepare_model_core(module.ptr()));
  }
  /// Under a DeepSpeed config (from the launcher's variables) the optimizer
  /// must match the file's optimizer section (else std::invalid_argument
  /// names both values), and with its gradient_clipping each step() clips
  /// the global gradient norm, as DeepSpeed's engine does.
  std::shared_ptr<AcceleratedOptimizer> prepare_optimizer(std::shared_ptr<torch::optim::Optimizer> optimizer);
  std::shared_ptr<AcceleratedScheduler> prepare_scheduler(std::shared_ptr<LRScheduler> scheduler);
  std::shared_ptr<AcceleratedScheduler> prepare_scheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler);
  /// This rank's share of the loader, on the device; it reports its
  /// progress to the gradient state (end of loader, remainder). Under a
  /// DeepSpeed config the first loader with a fixed batch size is taken as
  /// the training loader: its batch size per process must agree with the
  /// file's train_micro_batch_size_per_gpu / train_batch_size (else
  /// std::invalid_argument names both).
  template <class Batch>
  DataLoader<Batch> prepare_data_loader(const DataLoader<Batch>& loader) {
    auto out = ::accel::prepare_data_loader(loader, loader_options());
    check_training_batch_size(out.total_batch_size());
    out.set_observer(gradient_state_);
    loaders_.push_back(out.state_handle());
    return out;
  }
  /// As prepare_data_loader, for a loader outside the saved state (a test
  /// set's prediction pass): save_state/load_state do not hold its
  /// position, so checkpoints are the same whether or not it was made, and
  /// it is never taken as the DeepSpeed training loader. gather_for_metrics
  /// drops its last batch's repeats as for any prepared loader.
  template <class Batch>
  DataLoader<Batch> prepare_unsaved_data_loader(const DataLoader<Batch>& loader) {
    auto out = ::accel::prepare_data_loader(loader, loader_options());
    out.set_observer(gradient_state_);
    return out;
  }

  // --- the training step ---------------------------------------------------
  /// loss / gradient_accumulation_steps, scaled under fp16, then backward.
  void backward(const torch::Tensor& loss, bool retain_graph = false);
  /// One batch of gradient accumulation: decides whether it syncs, and
  /// suppresses the all-reduce in `models` when it does not.
  template <class... Models>
  AccumulateScope accumulate(Models&... models) {
    gradient_state_->advance();
    AccumulateScope scope;
    const bool sync = sync_gradients() || (use_distributed() && gradient_state_->plugin().sync_each_batch());
    if (!sync) (scope.guards_.push_back(std::make_unique<NoSyncGuard>(models.core().sync_flag())), ...);
    return scope;
  }
  /// Backward inside the scope does not all-reduce.
  template <class Holder>
  NoSyncGuard no_sync(PreparedModel<Holder>& model) {
    return model.no_sync();
  }
  /// The current batch completes an accumulation (optimizers will step).
  bool sync_gradients() const { return gradient_state_->sync_gradients(); }
  GradientState& gradient_state() { return *gradient_state_; }

  /// Divides the gradients by the loss scale (fp16) so they can be
  /// inspected or clipped; null: every prepared optimizer.
  void unscale_gradients(AcceleratedOptimizer* optimizer = nullptr);
  /// Unscales, then clips the gradients of `parameters` to a total norm of
  /// `max_norm`; returns the norm before clipping as a 0-dim tensor on the
  /// device (as Accelerate does: reading it with .item() is the caller's
  /// choice, so a plain step never waits for the GPU; see optim/clip_grad.h).
  /// Under DDP every rank holds the averaged gradients, so this is the
  /// global norm; under ZeRO each rank holds a slice and the norm is
  /// all-reduced over the slices (every rank must call it). On a batch that
  /// syncs, the optimizers stepping these parameters then skip the clip a
  /// DeepSpeed config's gradient_clipping would make in their next step().
  torch::Tensor clip_grad_norm_(const std::vector<torch::Tensor>& parameters, double max_norm, double norm_type = 2.0);
  /// Unscales, then clamps every gradient element to [-clip_value, clip_value].
  void clip_grad_value_(const std::vector<torch::Tensor>& parameters, double clip_value);

  /// The whole step `fn` (forward, backward, clipping, optimizer steps) as
  /// a callable that, with options().cuda_graph() on a GPU, is recorded
  /// once as a CUDA graph and then replayed (see graph/captured_step.h);
  /// otherwise it calls `fn`. Each call is one batch: do not call
  /// accumulate() inside. Throws when capture is asked for and the setup
  /// cannot be captured (gradient accumulation, DDP, fp16 scaling).
  CapturedStep capture_step(CapturedStep::Function fn, CaptureOptions capture_options = {});
  /// Whether capture_step can record a step with this setup: a CUDA
  /// device, one process, no gradient accumulation, no fp16 loss scaling,
  /// and every optimizer prepared so far stepped by ATen's fused kernels on
  /// that device.
  bool can_capture_step() const;

  /// Autocast for code outside the prepared model (no-op without mixed precision).
  AutocastGuard autocast() const { return AutocastGuard(device(), mixed_precision_); }
  /// The fp16 loss scaler (null unless mixed_precision is fp16).
  GradScaler* scaler() { return scaler_.get(); }

  // --- checkpoints (docs/checkpointing.md) --------------------------------
  /// Saves everything prepared and registered into `dir` (every process
  /// calls it): model weights (model.safetensors, model_1.safetensors ...),
  /// optimizer states (optimizer[_i].safetensors + .json), schedulers,
  /// loader positions, the loss scaler, each rank's random states and the
  /// registered objects, then accel_state.json. The folder appears whole
  /// or not at all (see checkpoint/staged_directory.h). Without `dir`:
  /// project_config's automatic naming (an error when it is off). Returns
  /// the folder written.
  std::filesystem::path save_state(const std::optional<std::filesystem::path>& dir = std::nullopt);
  /// Restores a save_state folder into the same set of prepared and
  /// registered objects (without `dir`: the newest automatic checkpoint).
  /// Refuses, naming what differs, a folder without a complete save, one
  /// saved by another number of processes or with other objects, and
  /// tensors whose shape or dtype do not fit. Returns the folder loaded.
  std::filesystem::path load_state(const std::optional<std::filesystem::path>& dir = std::nullopt);
  /// Saves and restores `object` with the state (custom_checkpoint_<i>):
  /// a torch::nn::Module, or any type with state_dict()/load_state_dict()
  /// over named tensors (see checkpoint/checkpointable.h).
  template <class T>
  void register_for_checkpointing(std::shared_ptr<T> object) {
    custom_.push_back(checkpoint_hooks(std::move(object)));
  }
  ProjectConfiguration& project_configuration() { return project_; }

  // --- metrics and utilities -----------------------------------------------
  torch::Tensor gather(const torch::Tensor& tensor) const { return ::accel::gather(tensor); }
  /// Gathers across ranks and drops the samples that were repeated to even
  /// out the last batch of the loader being iterated.
  torch::Tensor gather_for_metrics(const torch::Tensor& tensor) const;
  torch::Tensor reduce(const torch::Tensor& tensor, ReduceOp op = ReduceOp::sum) const {
    return ::accel::reduce(tensor, op);
  }
  torch::Tensor pad_across_processes(const torch::Tensor& tensor, int64_t dim = 0, double pad_index = 0) const {
    return ::accel::pad_across_processes(tensor, dim, pad_index);
  }
  /// A barrier. Also brings the prepared optimizers' delayed updates
  /// (ZeRO-Offload's delayed_update) into the models first, so that after
  /// it every process sees its final weights.
  void wait_for_everyone() const;
  /// Writes `tensors` as safetensors from the main process only (atomic).
  void save(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::filesystem::path& path) const;
  /// Forgets every prepared object and releases cached GPU memory.
  void free_memory();

  // --- Accelerate's utilities by their names (docs/accelerate_names.md) ---
  /// The user's module inside a prepared model (the same as model.module()).
  template <class Holder>
  Holder unwrap_model(PreparedModel<Holder>& model) const {
    return model.module();
  }
  /// The model's parameters and buffers by their dotted names, unwrapped
  /// (what save_model writes; Accelerate's get_state_dict).
  template <class Holder>
  /// A tensor-parallel model's slices are gathered into whole tensors (a
  /// collective: every process calls it).
  safetensors::NamedTensors get_state_dict(PreparedModel<Holder>& model) const {
    return whole_state(model.core());
  }
  /// Writes the model's weights into `dir` as Hugging Face model files
  /// (model.safetensors, or shards and an index past max_shard_size) from
  /// the main process, after every process has finished its last step
  /// (wait_for_everyone). Every process calls it. See checkpoint/model_files.h.
  template <class Holder>
  SavedModel save_model(PreparedModel<Holder>& model, const std::filesystem::path& dir,
                        const SaveModelOptions& options = {}) const {
    wait_for_everyone();
    return ::accel::save_model(whole_state(model.core()), dir, options);
  }
  /// A copy of a prepared loader whose next pass starts after `num_batches`
  /// batches (resuming mid-epoch); later passes are whole.
  template <class Batch>
  DataLoader<Batch> skip_first_batches(const DataLoader<Batch>& loader, int64_t num_batches) const {
    return ::accel::skip_first_batches(loader, num_batches);
  }
  /// The main process runs the scope first, the others once it has left it.
  GoesFirst main_process_first() const { return GoesFirst(is_main_process()); }
  /// The same with each node's local main process first.
  GoesFirst local_main_process_first() const { return GoesFirst(is_local_main_process()); }
  /// This process's share of `items`: the first `size % num_processes`
  /// processes get one more; with `apply_padding` all get as many, padded
  /// with the last item, so that results can be gathered.
  template <class T>
  std::vector<T> split_between_processes(const std::vector<T>& items, bool apply_padding = false) const {
    return ::accel::split_between_processes(items, apply_padding);
  }
  torch::Tensor split_between_processes(const torch::Tensor& items, bool apply_padding = false) const {
    return ::accel::split_between_processes(items, apply_padding);
  }
  /// Each tensor of the dict gathered, without the last batch's repeats.
  TensorDict gather_for_metrics(const TensorDict& tensors) const;
  /// Raises this process's flag (e.g. its loss went NaN); check_trigger on
  /// every process then sees it.
  void set_trigger();
  /// Whether any process has set its flag since the last check that
  /// returned true; every process must call it (an all-reduce). Clears the
  /// flag when it returns true.
  bool check_trigger();

  // --- experiment tracking (tracking/) ---------------------------------
  /// Starts the run `project_name` in the trackers of options().log_with()
  /// and options().trackers(), each on the processes it runs on (the main
  /// process only, unless the tracker says otherwise), then gives them
  /// `config`. File trackers write under project_configuration()'s
  /// logging_dir (project_dir when unset): TensorBoard in
  /// <logging_dir>/<project_name>. Throws, before any training, naming a
  /// tracker that cannot start (an unwritable folder). Every process calls it.
  void init_trackers(const std::string& project_name, const TrackerConfig& config = {});
  /// Hands `values` to every started tracker on this process (on the others
  /// it does nothing). A tracker that fails is reported once and skipped;
  /// training goes on.
  void log(const LogValues& values, std::optional<int64_t> step = std::nullopt);
  /// The started tracker `name` (to reach what only it offers: cast it), or
  /// nullptr on a process it does not run on; throws for a name that
  /// log_with and trackers() do not hold.
  std::shared_ptr<GeneralTracker> get_tracker(const std::string& name) const;
  /// A progress bar (tracking/progress.h) drawn by the main process only;
  /// the others count without drawing. log() shows on it the values whose
  /// name holds "loss".
  ProgressBar progress_bar(int64_t total, ProgressOptions options = {});
  /// Finishes the trackers: everything logged is written when it returns.
  /// Unlike Accelerate's, it leaves the process group up.
  void end_training();

  const std::vector<std::shared_ptr<PreparedModelCore>>& models() const { return models_; }
  const std::vector<std::shared_ptr<AcceleratedOptimizer>>& optimizers() const { return optimizers_; }

 private:
  // checkpoint_progress, drawn by the main process only.
  TransferProgressOptions main_process_progress() const;

  AcceleratorOptions options_;
  ProcessState* state_;
  MixedPrecision mixed_precision_;
  std::shared_ptr<GradientState> gradient_state_;
  std::shared_ptr<GradScaler> scaler_;
  // From the launcher's variables / DeepSpeed file (ResolvedOptions).
  std::optional<ShardingConfig> sharding_config_;
  bool training_batch_checked_ = false;
  // How models and optimizers are replicated (parallel/replication.h).
  std::shared_ptr<Replication> replication_;
  std::shared_ptr<DeviceMesh> mesh_;  // options.parallelism_config's, or null
  std::vector<std::shared_ptr<PreparedModelCore>> models_;
  std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers_;
  std::vector<std::shared_ptr<AcceleratedScheduler>> schedulers_;
  std::vector<LoaderStateHandle> loaders_;
  std::vector<CheckpointHooks> custom_;
  ProjectConfiguration project_;
  torch::Tensor trigger_;
  // log_with's names checked at construction ("all" expanded).
  std::vector<std::string> tracker_names_;
  std::shared_ptr<TrackerSet> trackers_;
  std::weak_ptr<ProgressBar::State> progress_;  // the last bar progress_bar made

  std::shared_ptr<PreparedModelCore> prepare_model_core(std::shared_ptr<torch::nn::Module> module);
  GradientSet gradients_of(const std::vector<torch::Tensor>& parameters) const;
  PrepareOptions loader_options() const;
  // The data-parallel ranks' group under a mesh that also splits the model
  // (null: this rank alone); the process group otherwise.
  ProcessGroupPtr data_parallel_group() const;
  // save_state/load_state hold whole models and optimizers; a
  // tensor-parallel rank holds slices of both.
  void check_whole_model_on_each_rank(const char* what) const;
  // The model's state with tensor-parallel slices gathered whole.
  safetensors::NamedTensors whole_state(const PreparedModelCore& core) const;
  void check_training_batch_size(int64_t total_batch_size);

  // Pass one prepares everything but schedulers; pass two the schedulers.
  template <class T>
  auto prepare_first(T&& object) {
    using D = std::decay_t<T>;
    if constexpr (Module<D>) {
      return prepare_model(std::forward<T>(object));
    } else if constexpr (OptimizerPtr<D>) {
      return prepare_optimizer(std::forward<T>(object));
    } else if constexpr (IsDataLoader<D>::value) {
      return prepare_data_loader(object);
    } else if constexpr (SchedulerPtr<D>) {
      return D(std::forward<T>(object));
    } else {
      static_assert(!sizeof(D),
                    "Accelerator::prepare: expected a module holder, a shared_ptr to an optimizer or "
                    "scheduler, or an accel::DataLoader (a torch::data dataset becomes one with "
                    "accel::make_data_loader(dataset, accel::DataLoaderOptions(batch_size)), see "
                    "accel/data/torch_data.h)");
    }
  }
  template <class T>
  auto prepare_second(T&& object) {
    using D = std::decay_t<T>;
    if constexpr (SchedulerPtr<D>) {
      return prepare_scheduler(std::forward<T>(object));
    } else {
      return D(std::forward<T>(object));
    }
  }
};

}  // namespace accel
