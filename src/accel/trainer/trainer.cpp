// Trainer::train: Transformers' _inner_training_loop and _run_epoch
// (transformers/trainer.py), step for step: the same update boundaries,
// loss scaling, clipping, lr reading, logging, evaluation and save points.
#include "accel/trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <regex>
#include <set>
#include <stdexcept>

#include "accel/data/length_grouped_sampler.h"
#include "accel/graph/captured_step.h"
#include "accel/optim/schedules.h"
#include "accel/trainer/label_smoother.h"
#include "accel/trainer/trainer_impl.h"
#include "accel/unit/unit.h"
#include "accel/util/check.h"
#include "accel/util/memory.h"
#include "accel/util/seed.h"

namespace accel {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double round_to(double v, int digits) {
  const double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

// The scheduler's step count and base lrs as named tensors, so that
// save_state keeps it as a registered object (custom_checkpoint_0).
struct SchedulerCheckpoint {
  std::shared_ptr<LRScheduler> scheduler;
  safetensors::NamedTensors state_dict() const {
    const auto s = scheduler->state();
    return {{"last_epoch", torch::tensor(s.last_epoch, torch::kInt64)},
            {"base_lrs", torch::tensor(s.base_lrs, torch::kFloat64)}};
  }
  void load_state_dict(const safetensors::OrderedTensors& d) {
    SchedulerState s;
    s.last_epoch = d["last_epoch"].item<int64_t>();
    auto lrs = d["base_lrs"].contiguous();
    s.base_lrs.assign(lrs.data_ptr<double>(), lrs.data_ptr<double>() + lrs.numel());
    scheduler->load_state(s);
  }
};

AcceleratorOptions accelerator_options(const TrainingArguments& a) {
  AcceleratorOptions o;
  // The Trainer accumulates itself (as Transformers' does): the Accelerator
  // must not divide the loss again.
  o.gradient_accumulation_steps(1);
  if (a.fp16()) o.mixed_precision(MixedPrecision::fp16);
  if (a.bf16()) o.mixed_precision(MixedPrecision::bf16);
  if (a.use_cpu()) o.cpu(true);
  o.fused_optimizer_step(a.optim() == "adamw_torch_fused");
  o.cuda_graph(a.torch_compile());
  const auto& loaders = a.accelerator_config();
  o.split_batches(loaders.split_batches())
      .dispatch_batches(loaders.dispatch_batches())
      .even_batches(loaders.even_batches())
      .non_blocking(loaders.non_blocking());
  o.data_seed(static_cast<uint64_t>(a.data_seed().value_or(a.seed())));
  o.log_with(a.report_to());
  o.project_config(ProjectConfiguration()
                       .project_dir(a.output_dir())
                       .logging_dir(a.logging_dir() ? fs::path(*a.logging_dir()) : fs::path(a.output_dir()) / "runs"));
  return o;
}

}  // namespace

namespace {

std::vector<int64_t> example_lengths(const Dataset<TensorDict>& ds, const std::string& length_column,
                                     const std::string& main_input_name) {
  std::vector<int64_t> lengths;
  lengths.reserve(static_cast<size_t>(ds.size()));
  for (int64_t i = 0; i < ds.size(); ++i) {
    const TensorDict example = ds.get(i);
    if (auto l = example.find(length_column); l != example.end()) {
      ACCEL_CHECK_ARG(l->second.numel() == 1, "Trainer: train_sampling_strategy = group_by_length: example ", i, "'s '",
                      length_column, "' (length_column_name) has shape ", l->second.sizes(), ", expected one value");
      lengths.push_back(l->second.item<int64_t>());
    } else if (auto in = example.find(main_input_name); in != example.end()) {
      ACCEL_CHECK_ARG(in->second.dim() >= 1, "Trainer: train_sampling_strategy = group_by_length: example ", i, "'s '",
                      main_input_name, "' is a scalar, which has no length");
      lengths.push_back(in->second.size(0));
    } else {
      fail<std::invalid_argument>(
          "Trainer: train_sampling_strategy = group_by_length needs each example's length, "
          "but example ",
          i, " has neither '", length_column, "' (length_column_name) nor '", main_input_name,
          "' (ModelFunctions::main_input_name)");
    }
  }
  return lengths;
}

}  // namespace

DataLoader<TensorDict> make_loader(const std::shared_ptr<Dataset<TensorDict>>& ds, const TrainingArguments& a,
                                   bool training, bool on_gpu, const std::string& main_input_name,
                                   std::optional<int64_t> train_batch_size) {
  const int64_t batch_size =
      training ? train_batch_size.value_or(a.per_device_train_batch_size()) : a.per_device_eval_batch_size();
  const auto seed = static_cast<uint64_t>(a.data_seed().value_or(a.seed()));
  auto o = DataLoaderOptions(batch_size)
               .drop_last(a.dataloader_drop_last())
               .num_workers(a.dataloader_num_workers())
               .persistent_workers(a.dataloader_persistent_workers())
               .pin_memory(a.dataloader_pin_memory() && on_gpu);
  if (a.train_sampling_strategy() == "group_by_length") {
    // Transformers groups training batches over the accumulated step of
    // the arguments' batch size (also when auto_find_batch_size has found a
    // smaller one), evaluation batches with a generator seeded alike each time.
    const int64_t group = training ? a.per_device_train_batch_size() * a.gradient_accumulation_steps() : batch_size;
    o.sampler(std::make_shared<LengthGroupedSampler>(example_lengths(*ds, a.length_column_name(), main_input_name),
                                                     group, seed, /*reshuffle_each_epoch=*/training));
  } else if (training && a.train_sampling_strategy() == "random") {
    o.shuffle(true).seed(seed);
  }
  if (a.dataloader_prefetch_factor()) o.prefetch_factor(*a.dataloader_prefetch_factor());
  return make_data_loader(ds, o);
}

std::vector<std::string> decay_parameter_names(const torch::nn::Module& model) {
  static const std::regex forbidden("bias|layernorm|rmsnorm|(^|\\.)norm($|\\.)|_norm($|\\.)");
  std::vector<std::string> out;
  // Parameters inside a LayerNorm (at any depth) never decay.
  std::function<void(const torch::nn::Module&, const std::string&, bool)> walk =
      [&](const torch::nn::Module& m, const std::string& prefix, bool in_norm) {
        for (const auto& p : m.named_parameters(/*recurse=*/false)) {
          const std::string name = prefix + p.key();
          std::string lower;
          for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          if (!in_norm && !std::regex_search(lower, forbidden)) out.push_back(name);
        }
        for (const auto& child : m.named_children()) {
          const bool norm = in_norm || child.value()->as<torch::nn::LayerNormImpl>() != nullptr;
          walk(*child.value(), prefix + child.key() + ".", norm);
        }
      };
  walk(model, "", false);
  return out;
}

Trainer::Trainer(TrainingArguments args, Datasets train_dataset, Datasets eval_dataset, Callbacks callbacks,
                 std::string main_input_name)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.args = args.resolved();
  m.main_input_name = std::move(main_input_name);
  ACCEL_CHECK_ARG(train_dataset, "Trainer: the train dataset is null");
  ACCEL_CHECK_ARG(eval_dataset || m.args.eval_strategy() == IntervalStrategy::no,
                  "Trainer: eval_strategy = ", to_string(m.args.eval_strategy()), " needs an eval dataset");
  set_seed(static_cast<uint64_t>(m.args.seed()), false, m.args.full_determinism());
  m.accelerator = std::make_unique<Accelerator>(accelerator_options(m.args));
  m.train_dataset = std::move(train_dataset);
  m.eval_dataset = std::move(eval_dataset);
  const bool on_gpu = m.accelerator->device().is_cuda();
  ACCEL_CHECK_ARG(!m.args.torch_compile() || !on_gpu || m.accelerator->num_processes() == 1,
                  "Trainer: torch_compile captures the training step as a CUDA graph, which accel does not yet do "
                  "with several processes (DDP); this job has ",
                  m.accelerator->num_processes());
  // Both loaders are prepared now, in this order, so that every checkpoint
  // holds the same objects whether or not it was taken after an evaluation.
  m.train_loader.emplace(
      m.accelerator->prepare_data_loader(make_loader(m.train_dataset, m.args, true, on_gpu, m.main_input_name)));
  m.train_batch_size = m.args.per_device_train_batch_size();
  if (m.eval_dataset)
    m.eval_loader.emplace(
        m.accelerator->prepare_data_loader(make_loader(m.eval_dataset, m.args, false, on_gpu, m.main_input_name)));
  m.callbacks.push_back(std::make_shared<DefaultFlowCallback>());
  for (auto& c : callbacks) {
    ACCEL_CHECK_ARG(c, "Trainer: a callback is null");
    m.callbacks.push_back(std::move(c));
  }
  m.state.is_local_process_zero = m.accelerator->is_local_main_process();
  m.state.is_world_process_zero = m.accelerator->is_main_process();
}

Trainer::~Trainer() = default;

void Trainer::set_model(Erased model) {
  ACCEL_CHECK_ARG(model.loss,
                  "Trainer: no compute_loss given, and the model has no forward(const TensorDict&) "
                  "returning the loss");
  ACCEL_CHECK_ARG(!model.compute_metrics || model.predict,
                  "Trainer: compute_metrics needs ModelFunctions::predict (the predictions it is computed on)");
  const double smoothing = impl_->args.label_smoothing_factor();
  if (smoothing > 0) {
    ACCEL_CHECK_ARG(model.predict, "Trainer: label_smoothing_factor = ", smoothing,
                    " needs ModelFunctions::predict (the logits it smooths)");
    // As Transformers: the smoothed loss on the logits wherever the batch
    // has "labels" (training and evaluation), the model's own elsewhere.
    model.loss = [loss = model.loss, predict = model.predict, smoothing,
                  shift = model.shift_labels](const TensorDict& b) -> torch::Tensor {
      auto labels = b.find("labels");
      if (labels == b.end()) return loss(b);
      return label_smoothed_loss(predict(b), labels->second, smoothing, shift);
    };
  }
  if (const auto alpha = impl_->args.neftune_noise_alpha()) {
    ACCEL_CHECK_ARG(model.set_embeddings_hook, "Trainer: neftune_noise_alpha = ", *alpha,
                    " adds noise to the model's input embeddings, which needs "
                    "ModelFunctions::set_input_embeddings_hook (the model's seam for it, see trainer/neftune.h)");
  }
  if (impl_->args.activation_checkpointing().value_or(false)) {
    const auto units = find_units(*model.module);
    ACCEL_CHECK_ARG(!units.empty(),
                    "Trainer: activation_checkpointing (gradient_checkpointing) recomputes the model's accel::Unit "
                    "blocks in backward, but the model has no units (wrap its layers in accel::Unit, unit/unit.h)");
    for (const auto& unit : units)
      if (unit.slot) unit.slot->set_checkpoint(true);
  }
  impl_->model = std::move(model);
  impl_->each([&](TrainerCallback& c) { c.on_init_end(impl_->args, impl_->state, impl_->control); });
}

const TrainerState& Trainer::state() const { return impl_->state; }
const TrainerControl& Trainer::control() const { return impl_->control; }
const TrainingArguments& Trainer::args() const { return impl_->args; }
Accelerator& Trainer::accelerator() { return *impl_->accelerator; }
std::shared_ptr<AcceleratedOptimizer> Trainer::optimizer() const { return impl_->optimizer; }
std::shared_ptr<LRScheduler> Trainer::lr_scheduler() const { return impl_->scheduler; }
void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) {
  ACCEL_CHECK_ARG(callback, "Trainer::add_callback: the callback is null");
  impl_->callbacks.push_back(std::move(callback));
}
Metrics Trainer::evaluate() { return impl_->evaluate(); }
PredictionOutput Trainer::predict(Datasets test_dataset) { return impl_->predict(test_dataset); }
void Trainer::save_model(const std::optional<std::string>& dir) {
  impl_->save_model(dir ? fs::path(*dir) : fs::path(impl_->args.output_dir()));
}

void Trainer::Impl::log(Metrics logs, std::optional<Clock::time_point> start) {
  logs["epoch"] = state.epoch;
  if (args.include_num_input_tokens_seen() != "no") {
    logs["num_input_tokens_seen"] = static_cast<double>(state.num_input_tokens_seen);
    if (start) {  // Transformers' speed_metrics("train", start, num_tokens=...)
      const double runtime = seconds_since(*start);
      logs["train_runtime"] = round_to(runtime, 4);
      if (runtime > 0)
        logs["train_tokens_per_second"] =
            round_to(static_cast<double>(state.num_input_tokens_seen - initial_tokens_seen) / runtime, 3);
    }
  }
  Metrics entry = logs;
  entry["step"] = static_cast<double>(state.global_step);
  state.log_history.push_back(entry);
  if (trackers_started) {
    LogValues values;
    for (const auto& [k, v] : logs) values.emplace_back(k, v);
    accelerator->log(values, state.global_step);
  }
  control.should_log = false;
  each([&](TrainerCallback& c) { c.on_log(args, state, control, logs); });
}

void Trainer::Impl::track_input_tokens(const TensorDict& batch) {
  const auto& mode = args.include_num_input_tokens_seen();
  if (mode == "no") return;
  const auto input = batch.find(model.main_input_name);
  ACCEL_CHECK_ARG(input != batch.end(), "Trainer: include_num_input_tokens_seen = ", mode, " counts the batch entry '",
                  model.main_input_name, "' (ModelFunctions::main_input_name), which the training batch lacks");
  // Without an attention mask, Transformers counts every token too (it
  // would look for a tokenizer's pad id, which accel's Trainer has none of).
  const auto mask = batch.find("attention_mask");
  torch::Tensor tokens = mode == "non_padding" && mask != batch.end()
                             ? mask->second.sum().to(torch::kInt64)
                             : torch::tensor(input->second.numel(), torch::kInt64);
  tokens = tokens.reshape({1}).to(accelerator->device());
  state.num_input_tokens_seen += accelerator->gather(tokens).sum().item<int64_t>();
}

TrainOutput Trainer::train(std::optional<std::string> resume_from_checkpoint) {
  auto& m = *impl_;
  const auto& a = m.args;
  ACCEL_CHECK_STATE(!m.trained, "Trainer::train: runs once per Trainer (build a new Trainer to train again)");
  m.trained = true;
  if (!resume_from_checkpoint) resume_from_checkpoint = a.resume_from_checkpoint();
  std::optional<fs::path> resume;
  if (resume_from_checkpoint) resume = m.resolve_checkpoint(*resume_from_checkpoint);

  // NEFTune's hook is in the model only while train() runs (Transformers'
  // activate_neftune / deactivate_neftune), whichever way it ends.
  struct ClearHook {
    std::function<void(EmbeddingsHook)> set;
    ~ClearHook() {
      if (set) set(nullptr);
    }
  } neftune;
  if (const auto alpha = a.neftune_noise_alpha()) {
    m.model.set_embeddings_hook(neftune_hook(m.model.module, *alpha));
    neftune.set = m.model.set_embeddings_hook;
  }

  if (!a.auto_find_batch_size()) return m.train_loop(resume, a.per_device_train_batch_size());
  // Transformers' find_executable_batch_size around its inner loop: on an
  // out-of-memory error, everything restarts from the beginning with 0.9
  // times the batch. A resumed run starts from the batch its checkpoint
  // was trained with.
  int64_t start = a.per_device_train_batch_size();
  if (resume) start = TrainerState::load(*resume / "trainer_state.json").train_batch_size.value_or(start);
  const auto reduce = [start](int64_t batch_size) {
    const auto next = static_cast<int64_t>(static_cast<double>(batch_size) * 0.9);
    ACCEL_CHECK(next > 0, "Trainer: auto_find_batch_size ran out of memory at every batch size from ", start,
                " down to ", batch_size, ": no executable batch size found, reached zero");
    return next;
  };
  return find_executable_batch_size(
      [&](int64_t batch_size) {
        if (batch_size != m.train_batch_size) m.restart_with_batch_size(batch_size);
        return m.train_loop(resume, batch_size);
      },
      start, reduce);
}

void Trainer::Impl::restart_with_batch_size(int64_t batch_size) {
  ACCEL_CHECK(!model.core->sharding(), "Trainer: auto_find_batch_size cannot restart training with batch size ",
              batch_size,
              ": the model's parameters are sharded (ZeRO-3/FSDP), and a sharded model is not prepared again");
  // What the failed attempt held: gradients, optimizer state, the prepared
  // objects (free_memory also empties the CUDA cache).
  model.module->zero_grad();
  optimizer.reset();
  scheduler.reset();
  accelerator->free_memory();
  model.core = model.reprepare();
  const bool on_gpu = accelerator->device().is_cuda();
  train_loader.emplace(
      accelerator->prepare_data_loader(make_loader(train_dataset, args, true, on_gpu, main_input_name, batch_size)));
  if (eval_dataset)
    eval_loader.emplace(
        accelerator->prepare_data_loader(make_loader(eval_dataset, args, false, on_gpu, main_input_name)));
  train_batch_size = batch_size;
  const bool local0 = state.is_local_process_zero, world0 = state.is_world_process_zero;
  state = TrainerState();
  state.is_local_process_zero = local0;
  state.is_world_process_zero = world0;
  control = TrainerControl();
}

TrainOutput Trainer::Impl::train_loop(const std::optional<fs::path>& resume, int64_t batch_size) {
  auto& m = *this;
  const auto& a = m.args;

  // --- the step counts (set_initial_training_values) ---------------------
  const int64_t len_dl = m.train_loader->size();
  ACCEL_CHECK_ARG(len_dl > 0, "Trainer: the training loader has ", len_dl, " batches on this process");
  const int64_t ga = a.gradient_accumulation_steps();
  const int64_t nupe = std::max<int64_t>(len_dl / ga + (len_dl % ga > 0), 1);
  const int64_t max_steps =
      a.max_steps() > 0 ? a.max_steps() : static_cast<int64_t>(std::ceil(a.num_train_epochs() * nupe));
  const int64_t num_epochs = a.max_steps() > 0 ? max_steps / nupe + (max_steps % nupe > 0)
                                               : static_cast<int64_t>(std::ceil(a.num_train_epochs()));
  const int64_t total_batch = batch_size * ga * m.accelerator->num_processes();
  if (a.torch_compile()) {
    const int64_t n = m.train_dataset->size();
    ACCEL_CHECK_ARG(a.dataloader_drop_last() || n % (batch_size * m.accelerator->num_processes()) == 0,
                    "Trainer: torch_compile replays one captured step, which needs every batch of one shape, but ", n,
                    " examples in batches of ", batch_size, " on ", m.accelerator->num_processes(),
                    " process(es) leave a short last batch; set dataloader_drop_last");
  }
  const double num_train_samples = a.max_steps() > 0
                                       ? static_cast<double>(max_steps * total_batch)
                                       : static_cast<double>(m.train_dataset->size()) * a.num_train_epochs();

  // --- the state (_init_training_state) ----------------------------------
  m.state.train_batch_size = batch_size;
  const auto steps_of = [&](double v) {
    return v < 1 ? static_cast<int64_t>(std::ceil(max_steps * v)) : static_cast<int64_t>(v);
  };
  m.state.logging_steps = steps_of(a.logging_steps());
  m.state.eval_steps = steps_of(a.eval_steps().value_or(a.logging_steps()));
  m.state.save_steps = steps_of(a.save_steps());
  int64_t epochs_trained = 0, skip_batches = 0;
  if (resume) {
    const bool local0 = m.state.is_local_process_zero, world0 = m.state.is_world_process_zero;
    m.state = TrainerState::load(*resume / "trainer_state.json");
    m.state.is_local_process_zero = local0;
    m.state.is_world_process_zero = world0;
    if (m.state.best_model_checkpoint && !fs::is_directory(*m.state.best_model_checkpoint))
      m.state.best_model_checkpoint.reset();
    epochs_trained = m.state.global_step / nupe;
    if (!a.ignore_data_skip()) skip_batches = (m.state.global_step % nupe) * ga;
  }
  m.state.max_steps = max_steps;
  m.state.num_train_epochs = num_epochs;

  // --- optimizer and schedule (_prepare_for_training) --------------------
  {
    const auto decay = decay_parameter_names(*m.model.module);
    const std::set<std::string> decay_set(decay.begin(), decay.end());
    std::vector<torch::Tensor> with, without;
    for (const auto& p : m.model.module->named_parameters()) {
      if (!p.value().requires_grad()) continue;
      (decay_set.count(p.key()) ? with : without).push_back(p.value());
    }
    auto options = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(a.learning_rate())
                                                              .betas({a.adam_beta1(), a.adam_beta2()})
                                                              .eps(a.adam_epsilon())
                                                              .weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(with, options(a.weight_decay()));
    groups.emplace_back(without, options(0.0));
    auto adamw = std::make_shared<torch::optim::AdamW>(std::move(groups), *options(a.weight_decay()));
    m.optimizer = m.accelerator->prepare_optimizer(adamw);
    m.scheduler = get_scheduler(parse_scheduler_type(a.lr_scheduler_type()), m.optimizer->optimizer(),
                                a.get_warmup_steps(max_steps), max_steps, a.lr_scheduler_kwargs());
    m.accelerator->register_for_checkpointing(std::make_shared<SchedulerCheckpoint>(SchedulerCheckpoint{m.scheduler}));
  }
  if (resume) m.accelerator->load_state(*resume);
  if (!a.report_to().empty() && !m.trackers_started) {
    m.accelerator->init_trackers(a.run_name().value_or("trainer"));
    m.trackers_started = true;
  }

  const auto start = Clock::now();
  const int64_t initial_global_step = m.state.global_step;
  m.initial_tokens_seen = m.state.num_input_tokens_seen;
  m.tr_loss = torch::zeros({}, torch::TensorOptions().device(m.accelerator->device()));
  m.total_loss_scalar = 0;
  m.globalstep_last_logged = m.state.global_step;
  auto& module = *m.model.module;
  module.zero_grad();
  std::vector<torch::Tensor> params = module.parameters();

  // Transformers' ProgressCallback: a bar over the steps, on the main process.
  std::optional<ProgressBar> bar;
  if (!a.disable_tqdm()) {
    bar.emplace(m.accelerator->progress_bar(max_steps, ProgressOptions().unit("step")));
    bar->update(m.state.global_step);
  }

  m.control.should_training_stop = false;
  m.each([&](TrainerCallback& c) { c.on_train_begin(a, m.state, m.control); });
  // Not a candidate for the best model (Transformers' eval_on_start neither).
  if (a.eval_on_start()) m.evaluate();

  // The clipped norm stays a tensor until it is logged (as Transformers
  // keeps it): reading it every step would wait for the device every step.
  const auto maybe_log_save_evaluate = [&](const torch::Tensor& grad_norm, std::optional<double> lr) {
    if (m.control.should_log && m.state.global_step > m.globalstep_last_logged) {
      const double tr = m.accelerator->gather(m.tr_loss.detach().reshape({1})).mean().item<double>();
      m.tr_loss.zero_();
      Metrics logs;
      logs["loss"] = tr / static_cast<double>(m.state.global_step - m.globalstep_last_logged);
      if (grad_norm.defined()) logs["grad_norm"] = grad_norm.item<double>();
      logs["learning_rate"] = lr ? *lr : m.scheduler->get_last_lr()[0];
      m.total_loss_scalar += tr;
      m.globalstep_last_logged = m.state.global_step;
      if (bar) bar->set_postfix("loss=" + std::to_string(logs["loss"]));
      m.log(logs, start);
    }
    if (m.control.should_evaluate) m.update_best_metric(m.evaluate());
    if (m.control.should_save) {
      m.save_checkpoint();
      m.control.should_save = false;
      m.each([&](TrainerCallback& c) { c.on_save(a, m.state, m.control); });
    }
  };

  const double max_norm = a.max_grad_norm() > 0 ? a.max_grad_norm() : INFINITY;
  const auto mean_loss = [&](const TensorDict& batch) {
    torch::Tensor loss = m.model.loss(batch);
    ACCEL_CHECK(loss.numel() == 1, "Trainer: compute_loss returned a tensor of shape ", loss.sizes(),
                ", expected the batch's mean loss (one value)");
    return loss.reshape({});
  };
  // torch_compile: the whole step through Accelerator::capture_step, which
  // records it as a CUDA graph on a GPU and calls it eagerly elsewhere. Its
  // inputs are the batch's tensors in key order.
  const bool compiled = a.torch_compile();
  std::vector<std::string> batch_keys;
  std::optional<CapturedStep> captured;
  const auto compiled_step = [&](const TensorDict& batch) {
    if (!captured) {
      for (const auto& kv : batch) batch_keys.push_back(kv.first);
      captured.emplace(m.accelerator->capture_step([&](const std::vector<torch::Tensor>& in) {
        TensorDict b;
        for (size_t k = 0; k < in.size(); ++k) b[batch_keys[k]] = in[k];
        torch::Tensor loss = mean_loss(b);
        m.accelerator->backward(loss);
        torch::Tensor norm = m.accelerator->clip_grad_norm_(params, max_norm);
        m.optimizer->step();
        m.optimizer->zero_grad();
        return std::vector<torch::Tensor>{loss.detach().to(torch::kFloat32), norm.detach()};
      }));
    }
    std::vector<torch::Tensor> in;
    for (const auto& key : batch_keys) {
      const auto found = batch.find(key);
      ACCEL_CHECK(found != batch.end() && batch.size() == batch_keys.size(),
                  "Trainer: torch_compile replays one captured step, but a batch's entries differ from the first's");
      in.push_back(found->second);
    }
    return (*captured)(in);
  };

  auto& loader = *m.train_loader;
  for (int64_t epoch = epochs_trained; epoch < num_epochs; ++epoch) {
    m.control.should_epoch_stop = false;
    m.each([&](TrainerCallback& c) { c.on_epoch_begin(a, m.state, m.control); });
    int64_t step = -1, updates_done = 0;
    const bool resumed_epoch = resume && epoch == epochs_trained && skip_batches > 0;
    loader.set_epoch(epoch);
    loader.skip_next(resumed_epoch ? skip_batches : 0);
    if (resumed_epoch) {
      step = skip_batches - 1;
      updates_done = skip_batches / ga;
    }
    const int64_t remainder = len_dl % ga == 0 ? ga : len_dl % ga;
    torch::Tensor grad_norm;
    std::optional<double> lr;
    auto it = loader.begin();
    for (int64_t update = updates_done; update < nupe; ++update) {
      const int64_t want = update != nupe - 1 ? ga : remainder;
      std::vector<TensorDict> batches;
      for (; batches.size() < static_cast<size_t>(want) && it != loader.end(); ++it) batches.push_back(*it);
      const double current_ga = static_cast<double>(batches.size());
      for (size_t i = 0; i < batches.size(); ++i) {
        ++step;
        const bool sync = (step + 1) % ga == 0 || step + 1 == len_dl;
        if (step % ga == 0) m.on_step_begin();
        torch::Tensor loss_step, norm;
        if (compiled) {
          // torch_compile: forward, backward, clipping and the optimizer
          // step are one captured graph (ga is 1: every batch syncs).
          module.train();
          m.each([&](TrainerCallback& c) { c.on_pre_optimizer_step(a, m.state, m.control); });
          const auto out = compiled_step(batches[i]);
          loss_step = out[0];
          norm = out[1];
          m.each([&](TrainerCallback& c) { c.on_optimizer_step(a, m.state, m.control); });
        } else {
          std::optional<NoSyncGuard> no_sync;
          if (i + 1 != batches.size()) no_sync.emplace(m.model.core->sync_flag());
          module.train();
          torch::Tensor loss = mean_loss(batches[i]) / current_ga;
          m.accelerator->backward(loss);
          loss_step = loss.detach().to(torch::kFloat32);
        }
        m.track_input_tokens(batches[i]);
        if (a.logging_nan_inf_filter()) {
          // Transformers' rule (a NaN/inf loss counts as the mean so far),
          // chosen on the device: asking the host whether the loss is finite
          // would wait for every step to finish before the next is queued.
          const auto mean_so_far = m.tr_loss / static_cast<double>(1 + m.state.global_step - m.globalstep_last_logged);
          m.tr_loss.copy_(torch::where(torch::isfinite(loss_step), m.tr_loss + loss_step, m.tr_loss + mean_so_far));
        } else {
          m.tr_loss += loss_step;
        }
        if (sync) {
          if (compiled) {
            grad_norm = norm.clone();  // the graph's output is overwritten by the next replay
          } else {
            grad_norm = m.accelerator->clip_grad_norm_(params, max_norm);
            m.each([&](TrainerCallback& c) { c.on_pre_optimizer_step(a, m.state, m.control); });
            m.optimizer->step();
            m.each([&](TrainerCallback& c) { c.on_optimizer_step(a, m.state, m.control); });
          }
          lr = m.scheduler->get_last_lr()[0];
          if (!m.optimizer->step_was_skipped()) m.scheduler->step();
          if (!compiled) m.optimizer->zero_grad();
          m.state.global_step += 1;
          m.state.epoch = static_cast<double>(epoch) + static_cast<double>(step + 1) / static_cast<double>(len_dl);
          if (bar) bar->update();
          m.each([&](TrainerCallback& c) { c.on_step_end(a, m.state, m.control); });
          maybe_log_save_evaluate(grad_norm, lr);
        } else {
          m.each([&](TrainerCallback& c) { c.on_substep_end(a, m.state, m.control); });
        }
        if (m.control.should_epoch_stop || m.control.should_training_stop) break;
      }
      if (m.control.should_epoch_stop || m.control.should_training_stop) break;
    }
    if (step < 0) m.control.should_training_stop = true;
    m.each([&](TrainerCallback& c) { c.on_epoch_end(a, m.state, m.control); });
    maybe_log_save_evaluate(grad_norm, lr);
    if (m.control.should_training_stop) break;
  }

  // --- _finalize_training -------------------------------------------------
  if (bar) bar->close();
  m.total_loss_scalar += m.accelerator->gather(m.tr_loss.detach().reshape({1})).mean().item<double>();
  const int64_t steps_trained = m.state.global_step - initial_global_step;
  const double train_loss = m.total_loss_scalar / std::max<double>(static_cast<double>(steps_trained), 0.001);
  const double runtime = seconds_since(start);
  Metrics metrics;
  metrics["train_runtime"] = round_to(runtime, 4);
  if (runtime > 0) {
    metrics["train_samples_per_second"] =
        round_to(num_train_samples * steps_trained / std::max<double>(static_cast<double>(max_steps), 1) / runtime, 3);
    metrics["train_steps_per_second"] = round_to(steps_trained / runtime, 3);
  }
  metrics["total_flos"] = m.state.total_flos;
  metrics["train_loss"] = train_loss;
  m.log(metrics);
  if (a.load_best_model_at_end() && m.state.best_model_checkpoint) m.load_best_model();
  if (m.accelerator->is_main_process() && m.state.best_model_checkpoint && a.save_total_limit() == 1) {
    for (const auto& c : sorted_checkpoints(a.output_dir(), m.state.best_model_checkpoint))
      if (!fs::equivalent(c, *m.state.best_model_checkpoint)) fs::remove_all(c);
  }
  m.accelerator->wait_for_everyone();
  m.each([&](TrainerCallback& c) { c.on_train_end(a, m.state, m.control); });
  if (m.trackers_started) m.accelerator->end_training();
  return TrainOutput{m.state.global_step, train_loss, metrics};
}

}  // namespace accel
