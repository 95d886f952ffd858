#include "accel/parallel/fsdp/sharded_optimizer_checkpoint.h"

#include <charconv>
#include <map>

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
  json groups, first;
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
    if (r == 0) first = j;
    const json names = parse_user_json(set.metadata(r).at(kPiecesKey));
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

// A run whose parameters are not sharded reading the sliced form: each
// parameter's state whole, or cut to its tensor-parallel slice.
class FromSlicesCheckpoint : public OptimizerCheckpoint {
 public:
  FromSlicesCheckpoint(torch::optim::Optimizer& optimizer, std::vector<Target> targets)
      : optimizer_(optimizer), targets_(std::move(targets)) {}

  void save(const fs::path&, size_t index, int) override {
    fail<std::logic_error>("optimizer ", index,
                           ": the checkpoint of full_shard's slices loads into a run without sharding, it is not "
                           "how such a run saves (save_state uses the mode's own checkpoint)");
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int, bool) const override {
    return sliced_files(dir, index);
  }

  void load(const fs::path& dir, size_t index, int, bool) override {
    load_from_slices(optimizer_, dir, index, targets_);
  }

 private:
  torch::optim::Optimizer& optimizer_;
  std::vector<Target> targets_;
};

}  // namespace

bool has_sliced_optimizer_files(const fs::path& dir, size_t index) { return sliced(dir, index); }

std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint_from_slices(
    torch::optim::Optimizer& optimizer, const std::vector<std::pair<std::string, torch::Tensor>>& parameters) {
  std::vector<Target> targets;
  for (const auto& [whole, parameter] : parameters)
    targets.push_back({whole, parameter, 0, parameter.numel(), parameter.sizes().vec()});
  return std::make_unique<FromSlicesCheckpoint>(optimizer, std::move(targets));
}

std::unique_ptr<OptimizerCheckpoint> sharded_optimizer_checkpoint(torch::optim::Optimizer& optimizer,
                                                                  const ShardedOptimizerTensors& tensors,
                                                                  int world_size, int file, bool unsplit_parameters) {
  return std::make_unique<SlicedOptimizerCheckpoint>(optimizer, tensors, world_size, file, unsplit_parameters);
}

}  // namespace accel::fsdp
