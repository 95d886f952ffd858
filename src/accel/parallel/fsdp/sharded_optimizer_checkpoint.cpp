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
    std::vector<fs::path> all;
    for (int r = 0; r < saved_world(dir, index); ++r) {
      all.push_back(dir / rank_file(index, r, ".safetensors"));
      all.push_back(dir / rank_file(index, r, ".json"));
    }
    return all;
  }

  void load(const fs::path& dir, size_t index, int rank, bool) override {
    if (!sliced(dir, index)) {
      const auto file = dir / rank_file(index, rank, ".safetensors");
      load_optimizer_state(optimizer_, safetensors::load_file(file),
                           read_checkpoint_text(dir / rank_file(index, rank, ".json")), "'" + file.string() + "'");
      return;
    }
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
    const auto& places = tensors_.places();
    for (size_t n = 0; n < places.size(); ++n) {
      const std::string whole = whole_name(places[n]);
      auto it = saved_state.find(whole);
      if (it == saved_state.end()) continue;  // never stepped
      state[std::to_string(n)] = it->second;
      const auto& piece = places[n].unit->piece(places[n].index);
      const auto& param = places[n].unit->parameters()[places[n].index];
      const int64_t begin = places[n].unit->piece_begin(places[n].index);
      for (const auto& field : fields[whole]) {
        const auto name = whole + "/" + field;
        tensors.insert("state." + std::to_string(n) + "." + field,
                       read_piece(set, name, param, begin, piece.numel(), set.whole(name).dtype));
      }
    }
    first["state"] = state;
    load_optimizer_state(optimizer_, tensors, first.dump(),
                         "'" + dir.string() + "' (" + std::to_string(saved) + " ranks' optimizer files)");
  }

 private:
  using Place = ShardedOptimizerTensors::Place;

  static std::string whole_name(const Place& place) {
    return std::to_string(place.model) + "/" + place.unit->names()[place.index];
  }
  static bool sliced(const fs::path& dir, size_t index) {
    const auto file = dir / rank_file(index, 0, ".safetensors");
    return fs::exists(file) && safetensors::load_metadata(file).count(kPiecesKey) > 0;
  }
  static int saved_world(const fs::path& dir, size_t index) {
    return slice_file_world_size(dir / rank_file(index, 0, ".safetensors"));
  }

  torch::optim::Optimizer& optimizer_;
  const ShardedOptimizerTensors& tensors_;
  int world_size_;
  int file_;                 // this rank's file number, or -1: its rank
  bool unsplit_parameters_;  // whether it writes the state of parameters no tensor-parallel plan split
};

}  // namespace

std::unique_ptr<OptimizerCheckpoint> sharded_optimizer_checkpoint(torch::optim::Optimizer& optimizer,
                                                                  const ShardedOptimizerTensors& tensors,
                                                                  int world_size, int file, bool unsplit_parameters) {
  return std::make_unique<SlicedOptimizerCheckpoint>(optimizer, tensors, world_size, file, unsplit_parameters);
}

}  // namespace accel::fsdp
