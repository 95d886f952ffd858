// Accelerator::save_state / load_state: the layout of a checkpoint folder
// and the order in which processes write it (see docs/checkpointing.md).
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/accelerator.h"
#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/model_slices.h"
#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/checkpoint/random_state.h"
#include "accel/checkpoint/staged_directory.h"
#include "accel/checkpoint/tensor_parallel_optimizer_checkpoint.h"
#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/parallel/fsdp/fully_sharded_slices.h"
#include "accel/parallel/fsdp/sharded_optimizer.h"
#include "accel/parallel/fsdp/sharded_optimizer_checkpoint.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/model_sharding.h"
#include "accel/parallel/pipeline/stage_module.h"
#include "accel/parallel/replication.h"
#include "accel/parallel/zero/zero_engine.h"
#include "accel/parallel/zero/zero_mesh_checkpoint.h"
#include "accel/util/check.h"
#include "accel/util/user_json.h"

namespace fs = std::filesystem;

namespace accel {

namespace {

using json = nlohmann::json;
constexpr const char* kStateFile = "accel_state.json";
constexpr const char* kStateFormat = "accel.state/1";

std::string random_states_name(int rank) { return "random_states_" + std::to_string(rank) + ".safetensors"; }

// Whether the mesh splits the model over ranks (tensor parallel): then each
// rank saves its slices (checkpoint/model_slices.h) instead of one process
// the whole model.
bool splits_model(const DeviceMesh* mesh) { return mesh && mesh->config().tp_size > 1; }

int tp_coordinate(const DeviceMesh& mesh) { return splits_model(&mesh) ? mesh.coordinate("tp") : 0; }

// Whether each rank holds one pipeline stage: then the stages' writers
// save their stage's slices, and the optimizer state goes by parameter name
// (each stage's optimizer numbers only its own parameters).
bool pipelined(const DeviceMesh* mesh) { return mesh && mesh->config().pp_size > 1; }

int pp_coordinate(const DeviceMesh& mesh) { return pipelined(&mesh) ? mesh.coordinate("pp") : 0; }

// The names of a stage's tied copies that the earlier stage holding the
// same weight writes (GPT-2's wte on the last stage): the folder holds each
// weight once, and on load both copies take that value by name.
std::set<std::string> tied_copies_written_elsewhere(const torch::nn::Module& module) {
  std::set<std::string> out;
  const auto* stage_module = dynamic_cast<const StageModuleImpl*>(&module);
  if (!stage_module) return out;
  const auto& stage = stage_module->stage();
  if (stage.tied_stage < 0 || stage.tied_stage > stage.index) return out;
  for (const auto& item : module.named_parameters())
    for (const auto& t : stage.tied)
      if (t.is_same(item.value())) out.insert(item.key());
  return out;
}

// save_model_slices (checkpoint/model_slices.h), less the tensors `left_out`.
void save_split_model(const torch::nn::Module& model, const fs::path& file, const ModelSliceWriter& writer,
                      const std::set<std::string>& left_out) {
  std::vector<Slice> slices;
  for (const auto& [name, tensor] : model_state(model))
    if (tensor.numel() > 0 && !left_out.count(name))  // empty: another pipeline stage's
      append_tensor_slices(slices, name, tensor, tensor, writer.replicated);
  save_slices(slices, file, writer.count);
}

// The optimizer's parameters as the sliced optimizer files name them
// ("<model>/<name>", with the model's parameter), in optimizer_state's
// numbering; under master weights the optimizer steps fp32 copies, each
// named as its model parameter and listed in `masters`.
struct NamedParameters {
  std::vector<std::pair<std::string, torch::Tensor>> names;
  std::vector<torch::Tensor> masters;  // per parameter, or none
};

NamedParameters optimizer_parameter_names(const std::vector<std::shared_ptr<PreparedModelCore>>& models,
                                          AcceleratedOptimizer& optimizer, const std::string& what) {
  std::unordered_map<const void*, std::pair<std::string, torch::Tensor>> known;
  for (size_t m = 0; m < models.size(); ++m)
    for (const auto& item : models[m]->module().named_parameters())
      known.emplace(item.value().unsafeGetTensorImpl(), std::pair{std::to_string(m) + "/" + item.key(), item.value()});
  std::unordered_map<const void*, torch::Tensor> model_of_master;
  const auto* masters = optimizer.master_weights();
  if (masters)
    for (size_t m = 0; m < masters->masters().size(); ++m)
      model_of_master.emplace(masters->masters()[m].unsafeGetTensorImpl(), masters->model_params()[m]);
  NamedParameters out;
  for (const auto& group : optimizer.optimizer().param_groups())
    for (const auto& p : group.params()) {
      auto master = model_of_master.find(p.unsafeGetTensorImpl());
      const auto& param = master == model_of_master.end() ? p : master->second;
      auto it = known.find(param.unsafeGetTensorImpl());
      ACCEL_CHECK(it != known.end(), what, ": an optimizer parameter of shape ", p.sizes(),
                  " is in no prepared model; the optimizer's state is saved by the models' parameter names");
      out.names.push_back(it->second);
      if (masters) out.masters.push_back(p);
    }
  return out;
}

json read_json(const fs::path& path) {
  try {
    return parse_user_json(read_checkpoint_text(path));
  } catch (const std::invalid_argument& e) {
    fail<std::runtime_error>("load_state: '", path.string(), "': ", e.what());
  }
}

// An integer field of a state file, checked against the range it is used in.
int64_t state_int(const json& j, const std::string& key, int64_t min, int64_t max, const fs::path& path) {
  auto it = j.find(key);
  const bool fits = it != j.end() && it->is_number_integer() &&
                    !(it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) &&
                    it->get<int64_t>() >= min && it->get<int64_t>() <= max;
  ACCEL_CHECK(fits, "load_state: '", path.string(), "': \"", key, "\" is ",
              it == j.end() ? std::string("missing") : json_excerpt(*it), ", expected an integer from ", min, " to ",
              max);
  return it->get<int64_t>();
}

json scheduler_json(const AcceleratedScheduler& s) {
  const auto st = s.state();
  return {{"kind", s.wraps_libtorch_scheduler() ? "libtorch" : "accel"},
          {"last_epoch", st.last_epoch},
          {"base_lrs", st.base_lrs}};
}

void load_scheduler_json(AcceleratedScheduler& s, const json& j, const fs::path& path) {
  const std::string kind = s.wraps_libtorch_scheduler() ? "libtorch" : "accel";
  try {
    ACCEL_CHECK(j.at("kind").get<std::string>() == kind, "it holds a ", excerpt(j.at("kind").get<std::string>()),
                " scheduler, the prepared one is ", kind);
    s.load_state(
        SchedulerState{state_int(j, "last_epoch", -1, INT64_MAX, path), j.at("base_lrs").get<std::vector<double>>()});
  } catch (const std::exception& e) {
    fail<std::runtime_error>("load_state: scheduler state '", path.string(), "': ", e.what());
  }
}

// How many of each kind of object the checkpoint holds, as accel_state.json records.
struct Counts {
  size_t models, optimizers, schedulers, dataloaders, custom;
  json to_json() const {
    return {{"models", models},
            {"optimizers", optimizers},
            {"schedulers", schedulers},
            {"dataloaders", dataloaders},
            {"custom_checkpoints", custom}};
  }
};

// The checkpoint of an optimizer that ZeRO or FSDP prepared on a device
// mesh; nullptr for any other (the mode's own, or tensor parallel's).
std::unique_ptr<OptimizerCheckpoint> mesh_optimizer_checkpoint(AcceleratedOptimizer& optimizer, const DeviceMesh* mesh,
                                                               int num_processes, int process_index) {
  if (!mesh) return nullptr;
  // FSDP: every process writes its pieces (its file numbered by its rank
  // in the job, not in its shard group), tensor-parallel ones as blocks of
  // their wholes; the parameters no plan split from tp coordinate 0.
  if (auto* tensors = dynamic_cast<fsdp::ShardedOptimizerTensors*>(optimizer.tensors()))
    return fsdp::sharded_optimizer_checkpoint(optimizer.optimizer(), *tensors, num_processes, process_index,
                                              tp_coordinate(*mesh) == 0);
  // ZeRO under tensor or context parallel: the shards of each tp group in
  // a folder of their own, numbered by the rank in ZeRO's group (dp or
  // dp x cp), not in the job.
  // Under pp, each stage's groups in folders of their own too.
  auto* engine = dynamic_cast<zero::ZeroEngine*>(optimizer.tensors());
  const auto& c = mesh->config();
  if (engine && (splits_model(mesh) || c.cp_size > 1 || pipelined(mesh)))
    return zero::zero_mesh_optimizer_checkpoint(*engine, pp_coordinate(*mesh) * c.tp_size + tp_coordinate(*mesh),
                                                c.pp_size * c.tp_size);
  return nullptr;
}

}  // namespace

TransferProgressOptions Accelerator::main_process_progress() const {
  auto options = options_.checkpoint_progress();
  if (!is_main_process()) options.bar().enabled(false);
  return options;
}

fs::path Accelerator::save_state(const std::optional<fs::path>& dir) {
  check_whole_model_on_each_rank("save_state");
  fs::path out;
  if (dir) {
    out = *dir;
  } else if (project_.automatic_checkpoint_naming()) {
    out = project_.checkpoints_dir() / ("checkpoint_" + std::to_string(project_.iteration()));
    ACCEL_CHECK(!fs::exists(out), "save_state: '", out.string(), "' already exists (iteration ", project_.iteration(),
                "); set project_configuration().iteration(...) to the next free number");
  } else {
    fail<std::invalid_argument>(
        "save_state: no folder given and project_config.automatic_checkpoint_naming is off; pass a folder");
  }
  for (auto& o : optimizers_) o->finish_pending_step();  // a delayed update belongs to this state
  const fs::path staging = staging_directory(out);
  TransferProgress progress("save_state", main_process_progress());
  if (is_main_process()) begin_staging(out);
  wait_for_everyone();

  // Each rank its generators; the main process everything shared.
  safetensors::save_file(random_states(), staging / random_states_name(process_index()));
  const Counts counts{models_.size(), optimizers_.size(), schedulers_.size(), loaders_.size(), custom_.size()};
  // Optimizers: each as the mode that prepared it keeps it (ZeRO: every
  // rank's shard, and a collective for the consolidated state).
  // A tensor-parallel model: its slices and its optimizer state sliced
  // alike, from one rank of each group of replicas.
  // ZeRO/FSDP on a mesh: see mesh_optimizer_checkpoint.
  // Pipeline stages: each stage's writers its slices, and its optimizer
  // state by parameter name in full_shard's sliced form (which any layout
  // whose parameters are not sharded loads, one process included); a tied
  // copy from the earlier stage only.
  const bool split = splits_model(mesh_.get()), staged = pipelined(mesh_.get());
  const auto writer = split || staged ? model_slice_writer(*mesh_) : std::nullopt;
  std::vector<std::set<std::string>> left_out;  // per model
  for (const auto& model : models_) left_out.push_back(tied_copies_written_elsewhere(model->module()));
  for (size_t i = 0; i < optimizers_.size(); ++i) {
    auto checkpoint = mesh_optimizer_checkpoint(*optimizers_[i], mesh_.get(), num_processes(), process_index());
    if (!checkpoint && staged) {
      fsdp::NamedSlicesWriter named{
          writer ? writer->index : -1, writer ? writer->count : 1, writer && writer->replicated, {}};
      for (size_t m = 0; m < models_.size(); ++m)
        for (const auto& name : left_out[m]) named.left_out.insert(std::to_string(m) + "/" + name);
      auto parameters = optimizer_parameter_names(models_, *optimizers_[i], "save_state");
      checkpoint = fsdp::optimizer_checkpoint_by_names(optimizers_[i]->optimizer(), parameters.names,
                                                       std::move(parameters.masters), std::move(named));
    }
    if (!checkpoint)
      checkpoint = split ? tensor_parallel_optimizer_checkpoint(*optimizers_[i], writer)
                         : replication_->optimizer_checkpoint(*optimizers_[i]);
    checkpoint->save(staging, i, process_index());
  }
  // Each model's tensors: every rank takes part (sharded ones are gathered,
  // or under SHARDED_STATE_DICT written by each rank as its slices).
  std::vector<std::optional<safetensors::NamedTensors>> model_states;
  for (size_t i = 0; i < models_.size(); ++i) {
    auto* sharding = models_[i]->sharding();
    if (split && sharding) {
      // Fully sharded tensor-parallel slices: every rank writes its pieces
      // (whatever state_dict_type: no rank holds a whole tensor), each as
      // the blocks of the whole it covers; the tensors no plan split from
      // tp coordinate 0, the buffers from the data-parallel first ranks.
      const auto* fully_sharded = dynamic_cast<const fsdp::FullyShardedModel*>(sharding);
      ACCEL_CHECK(fully_sharded, "save_state: model ", i,
                  " is sharded by a mode that cannot write tensor-parallel slices (only full_shard can)");
      fsdp::save_fully_sharded_slices(
          *fully_sharded, staging / sharded_model_file_name(i, process_index()),
          {process_index(), num_processes(), tp_coordinate(*mesh_) == 0, /*buffers=*/writer.has_value()});
      model_states.emplace_back();
    } else if (split || staged) {
      if (writer)
        save_split_model(models_[i]->module(), staging / sharded_model_file_name(i, writer->index), *writer,
                         left_out[i]);
      model_states.emplace_back();
    } else if (sharding && sharding->sharded_state_dict()) {
      sharding->save_slices(staging / sharded_model_file_name(i, process_index()), process_index(), num_processes());
      model_states.emplace_back();
    } else {
      model_states.emplace_back(models_[i]->state());
    }
  }
  if (is_main_process()) {
    for (size_t i = 0; i < models_.size(); ++i)
      if (model_states[i])
        write_model_files(*model_states[i], staging,
                          SaveModelOptions().weights_name(numbered("model", i, ".safetensors")));
    for (size_t i = 0; i < schedulers_.size(); ++i)
      write_file_atomic(staging / numbered("scheduler", i, ".json"), scheduler_json(*schedulers_[i]).dump());
    for (size_t i = 0; i < loaders_.size(); ++i)
      write_file_atomic(staging / numbered("dataloader", i, ".json"), loaders_[i].state().to_string());
    if (scaler_) {
      if (auto st = scaler_->state()) {
        const auto tensors = st->to_tensors();
        safetensors::save_file(safetensors::NamedTensors(tensors.begin(), tensors.end()),
                               staging / "scaler.safetensors");
      }
    }
    for (size_t i = 0; i < custom_.size(); ++i)
      safetensors::save_file(custom_[i].state_dict(),
                             staging / ("custom_checkpoint_" + std::to_string(i) + ".safetensors"));
  }
  wait_for_everyone();
  if (is_main_process()) {
    // Written last: a folder without it is not a complete checkpoint.
    json j = {{"format", kStateFormat},
              {"num_processes", num_processes()},
              {"mixed_precision", to_string(mixed_precision_)},
              {"iteration", project_.iteration()},
              {"gradient_step", gradient_state_->step()},
              {"objects", counts.to_json()}};
    write_file_atomic(staging / kStateFile, j.dump(2));
    commit_staging(out);
    if (!dir && project_.total_limit()) {
      auto all = list_checkpoints(project_.checkpoints_dir());
      const auto keep = static_cast<size_t>(*project_.total_limit());
      for (size_t i = 0; i + keep < all.size(); ++i) fs::remove_all(all[i].second);
    }
  }
  wait_for_everyone();
  project_.iteration(project_.iteration() + 1);
  return out;
}

fs::path Accelerator::load_state(const std::optional<fs::path>& dir) {
  check_whole_model_on_each_rank("load_state");
  for (auto& o : optimizers_) o->finish_pending_step();  // nothing may still write the model
  // Every rank checks what it will read, then all ranks compare their
  // findings before anything is loaded: a file missing on one rank (its
  // random states, its ZeRO shard, a folder on a node-local disk) stops
  // every rank with the same answer instead of leaving some of them loaded.
  fs::path in;
  json meta;
  bool same_world = true;
  fs::path random_file;
  std::vector<std::vector<fs::path>> model_slices;  // per model: its slice files, or none (model.safetensors)
  const bool has_scaler = scaler_ && scaler_->enabled();
  // A folder of tensor-parallel slices restores its optimizers on any
  // layout, whatever mode prepared them here; a tensor-parallel run cuts
  // its part out of a whole optimizer state.
  const bool split = splits_model(mesh_.get()), staged = pipelined(mesh_.get());
  auto optimizer_checkpoint = [&](size_t i) {
    if (auto checkpoint = mesh_optimizer_checkpoint(*optimizers_[i], mesh_.get(), num_processes(), process_index()))
      return checkpoint;
    ACCEL_CHECK(!zero::has_zero_mesh_optimizer_files(in, i), "load_state: '", in.string(), "' holds optimizer ", i,
                "'s state as ZeRO shards per tensor-parallel group (zero_tp<t>/), which only the layout that saved "
                "it loads (ZeRO with the same tp_size and data-parallel size)");
    // full_shard's slices into a run that does not shard: each parameter's
    // state whole, or as its tensor-parallel slice.
    auto* tensors = optimizers_[i]->tensors();
    if (fsdp::has_sliced_optimizer_files(in, i) && !dynamic_cast<fsdp::ShardedOptimizerTensors*>(tensors) &&
        !dynamic_cast<zero::ZeroEngine*>(tensors)) {
      // A pipeline's slices hold the fp32 masters (save_state under pp).
      auto parameters = optimizer_parameter_names(models_, *optimizers_[i], "load_state");
      if (!parameters.masters.empty()) {
        ACCEL_CHECK(fsdp::has_sliced_master_weights(in, i), "load_state: '", in.string(), "' holds optimizer ", i,
                    "'s state as full_shard's slices, which keep no separate fp32 master weights; load it without "
                    "master_weights, or under full_shard");
        return fsdp::optimizer_checkpoint_by_names(optimizers_[i]->optimizer(), parameters.names,
                                                   std::move(parameters.masters), {});
      }
      return fsdp::optimizer_checkpoint_from_slices(optimizers_[i]->optimizer(), parameters.names);
    }
    // Other forms number the parameters of the whole model's optimizer,
    // which a stage's optimizer (its own parameters only) does not share.
    ACCEL_CHECK(!staged, "load_state: '", in.string(), "' holds no state of optimizer ", i, " by parameter name (",
                numbered("fsdp_optimizer", i, "_rank0.safetensors"),
                "), as save_state writes under pp_size > 1; a whole model's optimizer state (",
                numbered("optimizer", i, ".safetensors"),
                ", tp_optimizer files) is numbered over all its parameters, which pp_size ", mesh_->config().pp_size,
                " cannot cut into stages");
    if (has_tensor_parallel_optimizer_files(in, i)) return tensor_parallel_optimizer_checkpoint(*optimizers_[i], {});
    if (split) return tensor_parallel_optimizer_checkpoint(*optimizers_[i], {}, /*from_whole=*/true);
    return replication_->optimizer_checkpoint(*optimizers_[i]);
  };
  auto preflight = [&] {
    if (dir) {
      in = *dir;
    } else if (project_.automatic_checkpoint_naming()) {
      auto all = list_checkpoints(project_.checkpoints_dir());
      ACCEL_CHECK(!all.empty(), "load_state: no checkpoint_<n> folder in '", project_.checkpoints_dir().string(), "'");
      in = all.back().second;
    } else {
      fail<std::invalid_argument>(
          "load_state: no folder given and project_config.automatic_checkpoint_naming is off; pass a folder");
    }
    ACCEL_CHECK(fs::is_directory(in), "load_state: '", in.string(), "' is not a folder");
    ACCEL_CHECK(fs::exists(in / kStateFile), "load_state: '", in.string(), "' holds no complete accel checkpoint (",
                kStateFile, " is missing: the save did not finish, or the folder is not from save_state)");
    meta = read_json(in / kStateFile);
    ACCEL_CHECK(meta.is_object() && string_member(meta, "format") == kStateFormat, "load_state: '",
                (in / kStateFile).string(), "' is not an accel state file (expected \"format\": \"", kStateFormat,
                "\")");

    if (meta.contains("gradient_step")) state_int(meta, "gradient_step", 0, INT64_MAX, in / kStateFile);
    if (meta.contains("iteration")) state_int(meta, "iteration", -1, INT64_MAX - 1, in / kStateFile);

    // What the folder holds must be what this run prepared. Another number
    // of processes can resume only from full optimizer states (not ZeRO
    // shards) and without loaders (their positions are per process); ranks
    // the saving run did not have keep their own random states.
    const int saved_processes =
        static_cast<int>(state_int(meta, "num_processes", 1, std::numeric_limits<int>::max(), in / kStateFile));
    same_world = saved_processes == num_processes();
    if (!same_world) {
      std::string why;
      if (!loaders_.empty()) why = "the loader positions are per process";
      for (size_t i = 0; i < optimizers_.size() && why.empty(); ++i)
        why = optimizer_checkpoint(i)->other_world_refusal(in, i);
      ACCEL_CHECK(why.empty(), "load_state: '", in.string(), "' was saved by ", saved_processes,
                  " processes and this run has ", num_processes(), ": ", why, ". Resume with --num_processes ",
                  saved_processes, ", or load only the weights with accel::load_model_weights(model, \"",
                  (in / "model.safetensors").string(), "\")");
    }
    const Counts here{models_.size(), optimizers_.size(), schedulers_.size(), loaders_.size(), custom_.size()};
    const json saved_counts = meta.value("objects", json::object()), counts_here = here.to_json();
    for (const auto& [key, value] : counts_here.items()) {
      const json saved = saved_counts.is_object() ? saved_counts.value(key, json(-1)) : json(-1);
      ACCEL_CHECK(saved == value, "load_state: '", in.string(), "' holds ", json_excerpt(saved), " ", key,
                  ", this Accelerator has ", value.dump(),
                  " prepared or registered; prepare the same objects as the run that saved it");
    }

    // Every file present before anything is touched.
    std::string missing;
    model_slices.assign(models_.size(), {});
    for (size_t i = 0; i < models_.size(); ++i) {
      // Slices (SHARDED_STATE_DICT, tensor parallel): every file the first counts.
      if (fs::exists(in / sharded_model_file_name(i, 0))) {
        const int files = slice_file_world_size(in / sharded_model_file_name(i, 0));
        for (int r = 0; r < files; ++r) {
          model_slices[i].push_back(in / sharded_model_file_name(i, r));
          if (!fs::exists(model_slices[i].back())) missing += "\n  " + sharded_model_file_name(i, r);
        }
        continue;
      }
      try {
        find_checkpoint_files(in, numbered("model", i, ".safetensors"));  // either layout
      } catch (const std::exception&) {
        missing += "\n  " + numbered("model", i, ".safetensors");
      }
    }
    std::vector<fs::path> expected;
    for (size_t i = 0; i < optimizers_.size(); ++i)
      for (auto& file : optimizer_checkpoint(i)->files_to_load(in, i, process_index(), same_world))
        expected.push_back(std::move(file));
    for (size_t i = 0; i < schedulers_.size(); ++i) expected.push_back(in / numbered("scheduler", i, ".json"));
    for (size_t i = 0; i < loaders_.size(); ++i) expected.push_back(in / numbered("dataloader", i, ".json"));
    for (size_t i = 0; i < custom_.size(); ++i)
      expected.push_back(in / ("custom_checkpoint_" + std::to_string(i) + ".safetensors"));
    random_file = in / random_states_name(process_index());
    if (same_world) expected.push_back(random_file);
    if (has_scaler) expected.push_back(in / "scaler.safetensors");
    for (const auto& p : expected)
      if (!fs::exists(p)) missing += "\n  " + p.filename().string();
    ACCEL_CHECK(missing.empty(), "load_state: '", in.string(), "' lacks",
                num_processes() > 1 ? " (on rank " + std::to_string(process_index()) + ")" : "", ":", missing);
  };

  std::string problem;
  std::exception_ptr refused;
  try {
    preflight();
  } catch (const std::exception& e) {
    problem = e.what();
    refused = std::current_exception();
  }
  const std::vector<std::string> problems = gather_object(problem);
  std::string others;
  for (size_t r = 0; r < problems.size(); ++r)
    if (!problems[r].empty() && static_cast<int>(r) != process_index())
      others += "\n  rank " + std::to_string(r) + ": " + excerpt(problems[r], 400);
  // One process: the refusal as it was thrown; several: every rank says the same.
  if (refused && problems.size() == 1) std::rethrow_exception(refused);
  if (refused)
    fail<std::runtime_error>(problem, others.empty() ? "" : "\nOther ranks refused too:" + others,
                             "\nNothing was loaded on any rank.");
  ACCEL_CHECK(others.empty(), "load_state: not loading, other ranks refused the checkpoint:", others,
              "\nNothing was loaded on any rank.");

  TransferProgress progress("load_state", main_process_progress());
  for (size_t i = 0; i < models_.size(); ++i) {
    if (!model_slices[i].empty()) {
      if (auto* sharding = models_[i]->sharding())
        sharding->load_slices(SliceSet(model_slices[i]));
      else
        models_[i]->write_parameters([&] { load_model_slices(models_[i]->module(), model_slices[i]); });
      continue;
    }
    if (split || staged) {  // a whole model: each rank cuts its slices (its stage's) out
      const auto found = find_checkpoint_files(in, numbered("model", i, ".safetensors"));
      const auto& path = found.index_file.empty() ? found.files.front() : found.index_file;
      models_[i]->write_parameters(
          [&] { load_model_parts(models_[i]->module(), load_checkpoint(path), "'" + path.string() + "'"); });
      continue;
    }
    models_[i]->write_parameters([&] {
      load_model_weights(models_[i]->module(), in,
                         LoadModelOptions().weights_name(numbered("model", i, ".safetensors")));
    });
  }
  for (size_t i = 0; i < optimizers_.size(); ++i) optimizer_checkpoint(i)->load(in, i, process_index(), same_world);
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    const auto file = in / numbered("scheduler", i, ".json");
    load_scheduler_json(*schedulers_[i], read_json(file), file);
  }
  for (size_t i = 0; i < loaders_.size(); ++i) {
    const auto file = in / numbered("dataloader", i, ".json");
    try {
      loaders_[i].load_state(LoaderState::from_string(read_checkpoint_text(file)));
    } catch (const std::invalid_argument& e) {
      fail<std::runtime_error>("load_state: loader state '", file.string(), "': ", e.what());
    }
  }
  if (has_scaler) {
    const auto tensors = safetensors::load_file(in / "scaler.safetensors");
    std::map<std::string, torch::Tensor> m;
    for (const auto& item : tensors) m.emplace(item.key(), item.value());
    scaler_->load_state(GradScalerState::from_tensors(m));
  }
  for (size_t i = 0; i < custom_.size(); ++i)
    custom_[i].load_state_dict(
        safetensors::load_file(in / ("custom_checkpoint_" + std::to_string(i) + ".safetensors")));
  if (fs::exists(random_file))
    load_random_states(safetensors::load_file(random_file), "'" + random_file.string() + "'");
  // Both were checked before anything was loaded (preflight).
  gradient_state_->set_step(meta.value("gradient_step", int64_t{0}));
  project_.iteration(meta.value("iteration", int64_t{-1}) + 1);
  return in;
}

}  // namespace accel
