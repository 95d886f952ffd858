#include "accel/parallel/fsdp/sharded_optimizer_checkpoint.h"

#include <charconv>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/fsdp/sharded_optimizer.h"
#include "accel/util/check.h"
#include "accel/util/user_json.h"

namespace fs = std::filesystem;

namespace accel::fsdp {
namespace {

using json = nlohmann::json;

constexpr const char* kPiecesKey = "accel_pieces";
constexpr const char* kMastersPrefix = "masters/";

std::string rank_file(size_t index, int rank, const std::string& extension) {
  return numbered("fsdp_optimizer", index, "") + "_rank" + std::to_string(rank) + extension;
}

// "state.<n>.<field>" -> (n, field); nullopt for another name.
std::optional<std::pair<size_t, std::string>> state_key(const std::string& key) {
  if (key.rfind("state.", 0) != 0) return std::nullopt;
  const auto dot = key.find('.', 6);
  if (dot == std::string::npos) return std::nullopt;
  size_t n = 0;
  auto [end, ec] = std::from_chars(key.data() + 6, key.data() + dot, n);
  if (ec != std::errc() || end != key.data() + dot) return std::nullopt;
  return std::pair{n, key.substr(dot + 1)};
}

// Whether the folder holds the sliced form (not the per-process form of before).
bool sliced(const fs::path& dir, size_t index) {
  const auto file = dir / rank_file(index, 0, ".safetensors");
  return fs::exists(file) && safetensors::load_metadata(file).count(kPiecesKey) > 0;
}

int saved_world(const fs::path& dir, size_t index) {
  return slice_file_world_size(dir / rank_file(index, 0, ".safetensors"));
}

// Every rank's files of the sliced form.
std::vector<fs::path> sliced_files(const fs::path& dir, size_t index) {
  std::vector<fs::path> all;
  for (int r = 0; r < saved_world(dir, index); ++r) {
    all.push_back(dir / rank_file(index, r, ".safetensors"));
    all.push_back(dir / rank_file(index, r, ".json"));
  }
  return all;
}

// What optimizer parameter n holds of the saved state: the elements
// [begin, begin + numel) of this rank's part (its tensor-parallel slice, or
// the whole) of `parameter`'s whole, "<model>/<name>" in the files.
struct Target {
  std::string whole;
  torch::Tensor parameter;
  int64_t begin = 0, numel = 0;
  std::vector<int64_t> shape;  // of the optimizer's tensors for it
};

// Loads every rank's sliced state in `dir` into `optimizer`, each
// parameter's part as `targets` (in optimizer_state's numbering) says.
void load_from_slices(torch::optim::Optimizer& optimizer, const fs::path& dir, size_t index,
                      const std::vector<Target>& targets) {
  const int saved = saved_world(dir, index);
  std::vector<fs::path> files;
  for (int r = 0; r < saved; ++r) files.push_back(dir / rank_file(index, r, ".safetensors"));
  const SliceSet set(files);
  // Per whole parameter, the saved non-tensor state (step counts) of any
  // rank that has one, and the state tensors' fields.
  std::map<std::string, json> saved_state;
  // The groups (hyper-parameters) come from the first file of a rank that
  // held the same parameters (under full_shard: every rank; a pipeline:
  // this stage's), else from file 0, renumbered to this optimizer's groups
  // (a pipeline's stages loading into one process).
  json ours = json::array();
  for (const auto& target : targets) ours.push_back(target.whole);
  json first;
  bool same_parameters = false;
  for (int r = 0; r < saved; ++r) {
    const auto text_file = dir / rank_file(index, r, ".json");
    json j;
    try {
      j = parse_user_json(read_checkpoint_text(text_file));
    } catch (const std::invalid_argument& e) {
      fail<std::runtime_error>("cannot load the optimizer state from '", text_file.string(), "': ", e.what());
    }
    ACCEL_CHECK(j.is_object() && j.contains("state") && j["state"].is_object(),
                "cannot load the optimizer state from '", text_file.string(), "': no \"state\" object");
    const json names = parse_user_json(set.metadata(r).at(kPiecesKey));
    if (r == 0 || (!same_parameters && names == ours)) {
      first = j;
      same_parameters = names == ours;
    }
    for (const auto& [n, entry] : j["state"].items()) {
      size_t k = 0;
      auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), k);
      ACCEL_CHECK(ec == std::errc() && end == n.data() + n.size() && names.is_array() && k < names.size(),
                  "cannot load the optimizer state from '", text_file.string(), "': state \"", n,
                  "\" names no parameter of ", files[r].string());
      saved_state.emplace(names[k].get<std::string>(), entry);
    }
  }
  std::map<std::string, std::vector<std::string>> fields;
  for (const auto& whole : set.wholes()) {
    const auto slash = whole.rfind('/');
    fields[whole.substr(0, slash)].push_back(whole.substr(slash + 1));
  }
  safetensors::OrderedTensors tensors;
  json state = json::object();
  for (size_t n = 0; n < targets.size(); ++n) {
    const auto& target = targets[n];
    auto it = saved_state.find(target.whole);
    if (it == saved_state.end()) continue;  // never stepped
    state[std::to_string(n)] = it->second;
    for (const auto& field : fields[target.whole]) {
      const auto name = target.whole + "/" + field;
      tensors.insert("state." + std::to_string(n) + "." + field,
                     read_piece(set, name, target.parameter, target.begin, target.numel, set.whole(name).dtype)
                         .view(target.shape));
    }
  }
  first["state"] = state;
  if (!same_parameters) {
    const auto& own = optimizer.param_groups();
    ACCEL_CHECK(first.contains("param_groups") && first["param_groups"].is_array() &&
                    first["param_groups"].size() == own.size(),
                "cannot load the optimizer state from '", dir.string(),
                "': its first rank's optimizer has parameter groups ",
                first.contains("param_groups") ? json_excerpt(first["param_groups"], 200) : std::string("no"),
                ", this one ", own.size(), " groups (no rank saved the same parameters as this one)");
    size_t n = 0;
    for (size_t g = 0; g < own.size(); ++g) {
      json ids = json::array();
      for (size_t k = 0; k < own[g].params().size(); ++k) ids.push_back(n++);
      first["param_groups"][g]["params"] = ids;
    }
  }
  load_optimizer_state(optimizer, tensors, first.dump(),
                       "'" + dir.string() + "' (" + std::to_string(saved) + " ranks' optimizer files)");
}

class SlicedOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  SlicedOptimizerCheckpoint(torch::optim::Optimizer& optimizer, const ShardedOptimizerTensors& tensors, int world_size,
                            int file, bool unsplit_parameters)
      : optimizer_(optimizer),
        tensors_(tensors),
        world_size_(world_size),
        file_(file),
        unsplit_parameters_(unsplit_parameters) {}

  void save(const fs::path& dir, size_t index, int rank) override {
    const auto files = optimizer_state(optimizer_);
    const auto& places = tensors_.places();
    json pieces = json::array();
    for (const auto& place : places) pieces.push_back(whole_name(place));
    std::vector<Slice> slices;
    for (const auto& [key, t] : files.tensors) {
      const auto parsed = state_key(key);
      ACCEL_CHECK(parsed && parsed->first < places.size(), "saving the sharded optimizer state: tensor '", key,
                  "' is not a parameter's state");
      const Place& place = places[parsed->first];
      const auto& piece = place.unit->piece(place.index);
      ACCEL_CHECK(t.numel() == piece.numel(), "saving the sharded optimizer state: '", key, "' has ", t.numel(),
                  " elements, its parameter's piece ", piece.numel(),
                  "; only element-wise state (one value per parameter element) can be sharded");
      append_piece_slices(slices, key, whole_name(place) + "/" + parsed->second, t,
                          place.unit->parameters()[place.index], place.unit->piece_begin(place.index), t.scalar_type(),
                          unsplit_parameters_);
    }
    const int file = file_ < 0 ? rank : file_;
    save_slices(slices, dir / rank_file(index, file, ".safetensors"), world_size_, {{kPiecesKey, pieces.dump()}});
    write_file_atomic(dir / rank_file(index, file, ".json"), files.json);
  }

  std::string other_world_refusal(const fs::path& dir, size_t index) const override {
    if (sliced(dir, index)) return "";
    return "its optimizer state is sharded per process (" + rank_file(index, 0, ".safetensors") +
           ", ...) in the format before resharding; resume with as many processes as saved it";
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int rank, bool) const override {
    if (!sliced(dir, index))
      return {dir / rank_file(index, rank, ".safetensors"), dir / rank_file(index, rank, ".json")};
    return sliced_files(dir, index);
  }

  void load(const fs::path& dir, size_t index, int rank, bool) override {
    if (!sliced(dir, index)) {
      const auto file = dir / rank_file(index, rank, ".safetensors");
      load_optimizer_state(optimizer_, safetensors::load_file(file),
                           read_checkpoint_text(dir / rank_file(index, rank, ".json")), "'" + file.string() + "'");
      return;
    }
    std::vector<Target> targets;
    for (const auto& place : tensors_.places()) {
      const auto& piece = place.unit->piece(place.index);
      targets.push_back({whole_name(place),
                         place.unit->parameters()[place.index],
                         place.unit->piece_begin(place.index),
                         piece.numel(),
                         {piece.numel()}});
    }
    load_from_slices(optimizer_, dir, index, targets);
  }

 private:
  using Place = ShardedOptimizerTensors::Place;

  static std::string whole_name(const Place& place) {
    return std::to_string(place.model) + "/" + place.unit->names()[place.index];
  }

  torch::optim::Optimizer& optimizer_;
  const ShardedOptimizerTensors& tensors_;
  int world_size_;
  int file_;                 // this rank's file number, or -1: its rank
  bool unsplit_parameters_;  // whether it writes the state of parameters no tensor-parallel plan split
};

// An optimizer whose parameters are not sharded (one process, DDP, tensor
// parallel, a pipeline stage) reading the sliced form, each parameter's
// state whole or cut to its tensor-parallel slice; and, given a writer,
// writing it: each state tensor as the whole parameter's (or the blocks
// of the whole its slice is), keyed by the parameter's name.
// With fp32 master weights (one per parameter, what the optimizer steps)
// each is saved too, as "masters/<model>/<name>" sliced like its
// parameter; the state fields of a parameter ("<model>/<name>/<field>")
// never take that name.
class NamedSlicesCheckpoint : public OptimizerCheckpoint {
 public:
  NamedSlicesCheckpoint(torch::optim::Optimizer& optimizer, std::vector<Target> targets,
                        std::vector<torch::Tensor> masters, std::optional<NamedSlicesWriter> writer)
      : optimizer_(optimizer), targets_(std::move(targets)), masters_(std::move(masters)), writer_(std::move(writer)) {}

  void save(const fs::path& dir, size_t index, int) override {
    if (!writer_)
      fail<std::logic_error>("optimizer ", index,
                             ": the checkpoint of full_shard's slices loads into a run without sharding, it is not "
                             "how such a run saves (save_state uses the mode's own checkpoint)");
    if (writer_->file < 0) return;  // a replica: another rank writes the same state
    const auto files = optimizer_state(optimizer_);
    json pieces = json::array();
    for (const auto& target : targets_) pieces.push_back(target.whole);
    std::vector<Slice> slices;
    for (const auto& [key, t] : files.tensors) {
      const auto parsed = state_key(key);
      ACCEL_CHECK(parsed && parsed->first < targets_.size(), "saving the optimizer state by parameter names: tensor '",
                  key, "' is not the state of one of the optimizer's ", targets_.size(), " parameters");
      const auto& target = targets_[parsed->first];
      if (writer_->left_out.count(target.whole)) continue;
      ACCEL_CHECK(t.numel() == target.parameter.numel(), "saving the optimizer state by parameter names: '", key,
                  "' has ", t.numel(), " elements, its parameter '", target.whole, "' ", target.parameter.numel(),
                  "; only element-wise state (one value per parameter element) is saved as slices");
      append_piece_slices(slices, key, target.whole + "/" + parsed->second, t, target.parameter, 0, t.scalar_type(),
                          writer_->replicated);
    }
    for (size_t n = 0; n < masters_.size(); ++n)
      if (!writer_->left_out.count(targets_[n].whole))
        append_piece_slices(slices, "master." + std::to_string(n), master_name(targets_[n].whole), masters_[n],
                            targets_[n].parameter, 0, masters_[n].scalar_type(), writer_->replicated);
    // The step counts of the left-out parameters go with their tensors.
    json text = json::parse(files.json);
    for (size_t n = 0; n < targets_.size(); ++n)
      if (writer_->left_out.count(targets_[n].whole)) text["state"].erase(std::to_string(n));
    save_slices(slices, dir / rank_file(index, writer_->file, ".safetensors"), writer_->files,
                {{kPiecesKey, pieces.dump()}});
    write_file_atomic(dir / rank_file(index, writer_->file, ".json"), text.dump());
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int, bool) const override {
    return sliced_files(dir, index);
  }

  void load(const fs::path& dir, size_t index, int, bool) override {
    // The masters read (and checked) before the optimizer state changes.
    std::vector<torch::Tensor> saved;
    if (!masters_.empty()) {
      std::vector<fs::path> files;
      for (int r = 0; r < saved_world(dir, index); ++r) files.push_back(dir / rank_file(index, r, ".safetensors"));
      const SliceSet set(files);
      for (size_t n = 0; n < masters_.size(); ++n) {
        const auto name = master_name(targets_[n].whole);
        ACCEL_CHECK(set.contains(name), "load_state: '", dir.string(), "' holds no fp32 master weight of '",
                    targets_[n].whole, "' (", name, "): was it saved without master_weights?");
        saved.push_back(read_piece(set, name, targets_[n].parameter, 0, masters_[n].numel(), masters_[n].scalar_type())
                            .view(masters_[n].sizes()));
      }
    }
    load_from_slices(optimizer_, dir, index, targets_);
    torch::NoGradGuard no_grad;
    for (size_t n = 0; n < saved.size(); ++n) masters_[n].copy_(saved[n]);
  }

 private:
  static std::string master_name(const std::string& whole) { return kMastersPrefix + whole; }

  torch::optim::Optimizer& optimizer_;
  std::vector<Target> targets_;
  std::vector<torch::Tensor> masters_;       // per target, or none
  std::optional<NamedSlicesWriter> writer_;  // none: loading only
};

std::vector<Target> whole_targets(const std::vector<std::pair<std::string, torch::Tensor>>& parameters) {
  std::vector<Target> targets;
  for (const auto& [whole, parameter] : parameters)
    targets.push_back({whole, parameter, 0, parameter.numel(), parameter.sizes().vec()});
  return targets;
}

}  // namespace

bool has_sliced_optimizer_files(const fs::path& dir, size_t index) { return sliced(dir, index); }

bool has_sliced_master_weights(const fs::path& dir, size_t index) {
  if (!sliced(dir, index)) return false;
  const SliceSet first({dir / rank_file(index, 0, ".safetensors")});  // kept alive: wholes() refers into it
  for (const auto& whole : first.wholes())
    if (whole.starts_with(kMastersPrefix)) return true;
  return false;
}

std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint_from_slices(
    torch::optim::Optimizer& optimizer, const std::vector<std::pair<std::string, torch::Tensor>>& parameters) {
  return std::make_unique<NamedSlicesCheckpoint>(optimizer, whole_targets(parameters), std::vector<torch::Tensor>{},
                                                 std::nullopt);
}

std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint_by_names(
    torch::optim::Optimizer& optimizer, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
    std::vector<torch::Tensor> masters, NamedSlicesWriter writer) {
  ACCEL_CHECK_ARG(masters.empty() || masters.size() == parameters.size(),
                  "optimizer_checkpoint_by_names: ", masters.size(), " master weights for ", parameters.size(),
                  " parameters, expected none or one each");
  ACCEL_CHECK_ARG(writer.file < 0 || (writer.file < writer.files && writer.files >= 1),
                  "optimizer_checkpoint_by_names: file ", writer.file, " of ", writer.files,
                  ", expected 0 <= file < files (or -1: a replica writing nothing)");
  return std::make_unique<NamedSlicesCheckpoint>(optimizer, whole_targets(parameters), std::move(masters),
                                                 std::move(writer));
}

std::unique_ptr<OptimizerCheckpoint> sharded_optimizer_checkpoint(torch::optim::Optimizer& optimizer,
                                                                  const ShardedOptimizerTensors& tensors,
                                                                  int world_size, int file, bool unsplit_parameters) {
  return std::make_unique<SlicedOptimizerCheckpoint>(optimizer, tensors, world_size, file, unsplit_parameters);
}

}  // namespace accel::fsdp
