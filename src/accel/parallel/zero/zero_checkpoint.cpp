#include "accel/parallel/zero/zero_checkpoint.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/util/check.h"
#include "accel/util/user_json.h"

namespace fs = std::filesystem;

namespace accel::zero {

namespace {

using json = nlohmann::json;
constexpr const char* kOptimizerKey = "accel.optimizer";

// "state.<index>.<field>" -> (index, field); false for other names.
bool split_state_name(const std::string& name, size_t& index, std::string& field) {
  if (name.rfind("state.", 0) != 0) return false;
  const auto dot = name.find('.', 6);
  if (dot == std::string::npos) return false;
  try {
    index = std::stoul(name.substr(6, dot - 6));
  } catch (const std::exception&) {
    return false;
  }
  field = name.substr(dot + 1);
  return true;
}

// The optimizer state of the slices: per group, its tensors by field.
struct SliceState {
  json meta;  // optimizer_state.h's JSON of the slice-form optimizer
  std::vector<std::map<std::string, torch::Tensor>> fields;
};
SliceState slice_state(const ZeroEngine& engine) {
  auto st = engine.optimizer_state_files();
  SliceState s;
  s.meta = json::parse(st.json);
  s.fields.resize(engine.layout().groups.size());
  for (auto& [name, t] : st.tensors) {
    size_t g;
    std::string field;
    if (split_state_name(name, g, field) && g < s.fields.size()) s.fields[g][field] = t;
  }
  return s;
}

// The group's whole flat tensor from every rank's owned slice (on the CPU).
torch::Tensor gather_group(const ZeroEngine& engine, size_t g, const torch::Tensor& slice) {
  const auto [ob, oe] = engine.owned(g);
  const int64_t padded = engine.layout().groups[g].padded_numel;
  if (ob == 0 && oe == padded) return slice.detach().to(torch::kCPU);
  const auto device = engine.flat_parameters().buffer(g).device();
  auto in = slice.detach().to(device).contiguous();
  auto out = torch::empty({padded}, in.options());
  engine.process_group()->_allgather_base(out, in)->wait();
  return out.to(torch::kCPU);
}

}  // namespace

std::string layout_file_name(size_t i) {
  return i == 0 ? "zero_layout.json" : "zero_layout_" + std::to_string(i) + ".json";
}

std::string shard_file_name(size_t i, int rank) {
  return (i == 0 ? std::string("zero") : "zero_" + std::to_string(i)) + "_shard_rank" + std::to_string(rank) +
         ".safetensors";
}

void save_shard(const ZeroEngine& engine, const fs::path& file) {
  const auto s = slice_state(engine);
  const auto& layout = engine.layout();
  safetensors::NamedTensors tensors;
  safetensors::Metadata metadata;
  for (size_t g = 0; g < layout.groups.size(); ++g) {
    // This rank's part of the layout, even where it steps more (NO_SHARD).
    const auto [ob, oe] = engine.owned(g);
    const auto [rb, re] = layout.rank_range(g, engine.rank());
    auto mine = [&](const torch::Tensor& t) { return t.detach().narrow(0, rb - ob, re - rb); };
    const auto prefix = "group." + std::to_string(g);
    tensors.emplace_back(prefix + ".param", mine(engine.master(g)));
    for (const auto& [field, t] : s.fields[g]) tensors.emplace_back(prefix + ".state." + field, mine(t));
    const auto key = std::to_string(g);
    if (s.meta.contains("state") && s.meta["state"].contains(key) && s.meta["state"][key].contains("step"))
      metadata["step." + key] = std::to_string(s.meta["state"][key]["step"].get<int64_t>());
  }
  metadata[kOptimizerKey] = s.meta.dump();
  safetensors::save_file(tensors, file, metadata);
}

void load_shards(ZeroEngine& engine, const fs::path& dir, size_t index) {
  const auto& layout = engine.layout();
  const auto layout_path = dir / layout_file_name(index);
  const auto saved = FlatLayout::from_json(read_checkpoint_text(layout_path), "'" + layout_path.string() + "'");
  ACCEL_CHECK(saved.world_size == layout.world_size, "load_state: the sharded optimizer state in '", dir.string(),
              "' was saved by ", saved.world_size, " processes and this run has ", layout.world_size,
              "; a sharded state loads only into as many processes. Resume with --num_processes ", saved.world_size,
              ", or save with ShardingOptions().consolidated_checkpoint(true), which any number of processes can load");
  std::string why;
  if (!layout.same_parameters(saved, &why))
    fail<std::runtime_error>("load_state: '", layout_path.string(),
                             "' describes other parameters than this model's optimizer: ", why);
  // The shards covering this rank's owned ranges (all of them under NO_SHARD).
  std::map<int, std::unique_ptr<safetensors::File>> files;
  auto file = [&](int r) -> safetensors::File& {
    auto& f = files[r];
    if (!f) {
      const auto path = dir / shard_file_name(index, r);
      ACCEL_CHECK(fs::exists(path), "load_state: '", dir.string(), "' lacks ", path.filename().string());
      f = std::make_unique<safetensors::File>(path);
    }
    return *f;
  };
  const auto& own = file(engine.rank());
  const auto& md = own.metadata();
  auto meta_it = md.find(kOptimizerKey);
  ACCEL_CHECK(meta_it != md.end(), "load_state: '", own.path().string(), "' lacks its \"", kOptimizerKey,
              "\" metadata");
  const std::string source = "'" + own.path().string() + "'";
  // Assembles `name` of group g over this rank's owned range.
  auto assemble = [&](size_t g, const std::string& name) {
    const auto [ob, oe] = engine.owned(g);
    torch::Tensor out;
    for (int r = 0; r < layout.world_size; ++r) {
      const auto [rb, re] = layout.rank_range(g, r);
      const int64_t lo = std::max(ob, rb), hi = std::min(oe, re);
      if (lo >= hi) continue;
      auto& f = file(r);
      ACCEL_CHECK(f.contains(name), "load_state: '", f.path().string(), "' lacks tensor ", name);
      auto t = f.get(name);
      ACCEL_CHECK(t.dim() == 1 && t.numel() == re - rb, "load_state: tensor ", name, " of '", f.path().string(),
                  "' has ", t.numel(), " elements, expected ", re - rb);
      if (!out.defined()) out = torch::empty({oe - ob}, t.options());
      out.narrow(0, lo - ob, hi - lo).copy_(t.narrow(0, lo - rb, hi - lo));
    }
    return out;
  };
  safetensors::OrderedTensors tensors;
  for (size_t g = 0; g < layout.groups.size(); ++g) {
    const auto prefix = "group." + std::to_string(g) + ".state.";
    for (const auto& key : own.keys())
      if (key.rfind(prefix, 0) == 0)
        tensors.insert("state." + std::to_string(g) + "." + key.substr(prefix.size()), assemble(g, key));
  }
  load_optimizer_state(engine.optimizer(), tensors, meta_it->second, source);
  engine.state_from_optimizer();
  if (!engine.masters_are_views()) {
    torch::NoGradGuard no_grad;
    for (size_t g = 0; g < layout.groups.size(); ++g) {
      auto master = engine.master(g);
      master.copy_(assemble(g, "group." + std::to_string(g) + ".param"));
    }
  }
}

OptimizerStateFiles consolidated_state(const ZeroEngine& engine) {
  const auto s = slice_state(engine);
  const auto& layout = engine.layout();
  OptimizerStateFiles out;
  json groups = json::array(), states = json::object();
  size_t index = 0, master_index = 0;
  const json saved_states = s.meta.value("state", json::object());
  for (size_t g = 0; g < layout.groups.size(); ++g) {
    const auto& fl = layout.groups[g];
    std::map<std::string, torch::Tensor> full;
    for (const auto& [field, t] : s.fields[g]) full[field] = gather_group(engine, g, t);
    torch::Tensor masters;
    if (!engine.masters_are_views()) masters = gather_group(engine, g, engine.master(g));
    json ids = json::array();
    for (const auto& fp : fl.params) {
      ids.push_back(index);
      for (const auto& [field, t] : full)
        out.tensors.emplace_back("state." + std::to_string(index) + "." + field,
                                 t.narrow(0, fp.offset, fp.numel).view(fp.shape).clone());
      if (saved_states.contains(std::to_string(g))) states[std::to_string(index)] = saved_states[std::to_string(g)];
      if (masters.defined())
        out.tensors.emplace_back("master." + std::to_string(master_index),
                                 masters.narrow(0, fp.offset, fp.numel).view(fp.shape).clone());
      ++index, ++master_index;
    }
    groups.push_back({{"params", ids}, {"options", s.meta["param_groups"][g]["options"]}});
  }
  json j = s.meta;
  j["param_groups"] = groups;
  j["state"] = states;
  out.json = j.dump();
  return out;
}

void load_consolidated_state(ZeroEngine& engine, const safetensors::OrderedTensors& tensors, const std::string& text,
                             const std::string& source) {
  const auto& layout = engine.layout();
  auto refuse = [&](const auto&... what) {
    fail<std::runtime_error>("cannot load the optimizer state from ", source, " into the ZeRO slices: ", what...);
  };
  json j;
  try {
    j = parse_user_json(text);
  } catch (const std::invalid_argument& e) {
    refuse(e.what());
  }
  if (!j.is_object() || !j.contains("param_groups") || !j["param_groups"].is_array()) refuse("no param_groups");
  const auto& groups = j["param_groups"];
  if (groups.size() != layout.groups.size())
    refuse(groups.size(), " param groups saved, the optimizer has ", layout.groups.size());
  const json states = j.value("state", json::object());
  // Tensors by parameter index and field.
  std::map<size_t, std::map<std::string, torch::Tensor>> by_index;
  for (const auto& item : tensors) {
    size_t i;
    std::string field;
    if (split_state_name(item.key(), i, field)) by_index[i][field] = item.value();
  }
  safetensors::OrderedTensors slices;
  json slice_groups = json::array(), slice_states = json::object();
  size_t master_index = 0;
  std::vector<torch::Tensor> master_slices(layout.groups.size());
  for (size_t g = 0; g < layout.groups.size(); ++g) {
    const auto& fl = layout.groups[g];
    const auto& saved = groups[g];
    if (!saved.contains("params") || !saved["params"].is_array() || saved["params"].size() != fl.params.size())
      refuse("param group ", g, " has ",
             saved.contains("params") ? std::to_string(saved["params"].size()) : std::string("no"),
             " parameters saved, the optimizer's has ", fl.params.size());
    const auto [ob, oe] = engine.owned(g);
    std::map<std::string, torch::Tensor> full;
    json scalars;
    torch::Tensor master_full;
    for (size_t k = 0; k < fl.params.size(); ++k, ++master_index) {
      const auto& fp = fl.params[k];
      const json& id = saved["params"][k];
      if (!id.is_number_unsigned())
        refuse("param group ", g, " parameter ", k, " has index ", json_excerpt(id), ", expected an integer >= 0");
      const size_t i = id.get<size_t>();
      auto place = [&](torch::Tensor& dst, const torch::Tensor& t, const std::string& what) {
        if (t.numel() != fp.numel)
          refuse(what, " has ", t.numel(), " elements, parameter '", fp.name, "' has ", fp.numel);
        if (!dst.defined()) dst = torch::zeros({fl.padded_numel}, t.options());
        dst.narrow(0, fp.offset, fp.numel).copy_(t.reshape({-1}));
      };
      if (auto it = by_index.find(i); it != by_index.end())
        for (const auto& [field, t] : it->second) place(full[field], t, "state." + std::to_string(i) + "." + field);
      if (scalars.is_null() && states.contains(std::to_string(i))) scalars = states[std::to_string(i)];
      if (const auto* m = tensors.find("master." + std::to_string(master_index)))
        place(master_full, *m, "master." + std::to_string(master_index));
    }
    for (const auto& [field, t] : full)
      slices.insert("state." + std::to_string(g) + "." + field, t.narrow(0, ob, oe - ob).clone());
    if (!scalars.is_null()) slice_states[std::to_string(g)] = scalars;
    slice_groups.push_back({{"params", json::array({g})}, {"options", saved.value("options", json::object())}});
    if (master_full.defined()) master_slices[g] = master_full.narrow(0, ob, oe - ob);
  }
  json sj = j;
  sj["param_groups"] = slice_groups;
  sj["state"] = slice_states;
  load_optimizer_state(engine.optimizer(), slices, sj.dump(), source);
  engine.state_from_optimizer();
  if (!engine.masters_are_views()) {
    // Saved masters where the file has them, else the model's loaded values.
    torch::NoGradGuard no_grad;
    for (size_t g = 0; g < layout.groups.size(); ++g) {
      auto master = engine.master(g);
      if (master_slices[g].defined()) {
        master.copy_(master_slices[g]);
      } else {
        const auto [ob, oe] = engine.owned(g);
        master.copy_(engine.flat_parameters().buffer(g).narrow(0, ob, oe - ob));
      }
    }
  }
}

}  // namespace accel::zero
