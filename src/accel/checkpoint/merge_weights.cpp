#include "accel/checkpoint/merge_weights.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/safetensors.h"

namespace accel {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  torch::ScalarType dtype;
  int64_t offset = 0, numel = 0;
};
struct Group {
  int64_t padded_numel = 0;
  std::vector<ParamEntry> params;
};
struct Layout {
  int64_t world_size = 0;
  std::vector<Group> groups;
};

[[noreturn]] void fail(const fs::path& where, const std::string& what) {
  throw std::runtime_error(where.string() + ": " + what);
}

int64_t get_int(const fs::path& file, const json& j, const std::string& key, const std::string& where, int64_t min) {
  auto it = j.find(key);
  if (it == j.end() || !(it->is_number_integer() || it->is_number_unsigned()) || it->get<int64_t>() < min)
    fail(file, where + key + " = " + (it == j.end() ? std::string("(missing)") : it->dump()) +
                   ": expected an integer >= " + std::to_string(min));
  return it->get<int64_t>();
}

torch::ScalarType layout_dtype(const fs::path& file, const json& v, const std::string& where) {
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (s == "F32") return torch::kFloat;
  if (s == "BF16") return torch::kBFloat16;
  if (s == "F16") return torch::kHalf;
  fail(file, where + "dtype = " + v.dump() + ": expected \"F32\", \"BF16\" or \"F16\"");
}

Layout read_layout(const fs::path& dir) {
  const fs::path file = dir / "zero_layout.json";
  std::ifstream in(file);
  if (!in) {
    std::string hint;
    if (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"))
      hint = " (its model.safetensors is already the merged model)";
    if (!fs::is_directory(dir)) fail(dir, "no such folder");
    fail(dir, "no zero_layout.json: not a sharded (ZeRO) checkpoint" + hint);
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(file, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || j.value("format", std::string()) != "accel-zero-v1")
    fail(file, "format = " + (j.is_object() && j.contains("format") ? j["format"].dump() : std::string("(missing)")) +
                   ": expected \"accel-zero-v1\"");
  Layout layout;
  layout.world_size = get_int(file, j, "world_size", "", 1);
  if (!j.contains("groups") || !j["groups"].is_array()) fail(file, "groups: expected an array");
  std::set<std::string> names;
  for (size_t g = 0; g < j["groups"].size(); ++g) {
    const json& jg = j["groups"][g];
    const std::string where = "groups[" + std::to_string(g) + "].";
    if (!jg.is_object()) fail(file, where + ": expected an object");
    Group group;
    group.padded_numel = get_int(file, jg, "padded_numel", where, 0);
    if (group.padded_numel % layout.world_size != 0)
      fail(file, where + "padded_numel = " + std::to_string(group.padded_numel) +
                     ": expected a multiple of world_size " + std::to_string(layout.world_size));
    if (!jg.contains("params") || !jg["params"].is_array()) fail(file, where + "params: expected an array");
    for (size_t i = 0; i < jg["params"].size(); ++i) {
      const json& jp = jg["params"][i];
      const std::string pw = where + "params[" + std::to_string(i) + "].";
      if (!jp.is_object() || !jp.contains("name") || !jp["name"].is_string() || jp["name"].get<std::string>().empty())
        fail(file, pw + "name: expected a non-empty string");
      ParamEntry p;
      p.name = jp["name"].get<std::string>();
      if (!names.insert(p.name).second) fail(file, pw + "name \"" + p.name + "\" appears twice");
      if (!jp.contains("shape") || !jp["shape"].is_array()) fail(file, pw + "shape: expected an array of sizes");
      int64_t count = 1;
      for (const auto& d : jp["shape"]) {
        if (!(d.is_number_integer() || d.is_number_unsigned()) || d.get<int64_t>() < 0)
          fail(file, pw + "shape = " + jp["shape"].dump() + ": expected sizes >= 0");
        p.shape.push_back(d.get<int64_t>());
        count *= p.shape.back();
      }
      p.dtype = layout_dtype(file, jp.value("dtype", json()), pw);
      p.offset = get_int(file, jp, "offset", pw, 0);
      p.numel = get_int(file, jp, "numel", pw, 0);
      if (p.numel != count)
        fail(file, pw + "numel = " + std::to_string(p.numel) + " but shape " + jp["shape"].dump() + " has " +
                       std::to_string(count) + " elements");
      if (p.offset + p.numel > group.padded_numel)
        fail(file, pw + "\"" + p.name + "\" ends at " + std::to_string(p.offset + p.numel) +
                       ", past the group's padded_numel " + std::to_string(group.padded_numel));
      group.params.push_back(std::move(p));
    }
    layout.groups.push_back(std::move(group));
  }
  return layout;
}

fs::path rank_file(const fs::path& dir, int64_t rank) {
  return dir / ("zero_shard_rank" + std::to_string(rank) + ".safetensors");
}

}  // namespace

safetensors::NamedTensors merged_zero_weights(const fs::path& dir) {
  const Layout layout = read_layout(dir);
  const int64_t n = layout.world_size;
  // Every problem with the set of files at once: missing ranks, extra ranks.
  std::vector<std::string> missing, extra;
  for (int64_t r = 0; r < n; ++r)
    if (!fs::exists(rank_file(dir, r))) missing.push_back(std::to_string(r));
  static const std::regex rank_re(R"(zero_shard_rank(\d+)\.safetensors)");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, rank_re) && std::stoll(m[1]) >= n) extra.push_back(name);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!missing.empty())
    fail(dir, "world_size is " + std::to_string(n) + " but the shard files of rank(s) " + join(missing) +
                  " are missing (zero_shard_rank<r>.safetensors)");
  if (!extra.empty())
    fail(dir, "world_size is " + std::to_string(n) + " but there are shard files of other ranks: " + join(extra) +
                  " (files of another save mixed in?)");

  std::vector<safetensors::File> files;
  files.reserve(n);
  for (int64_t r = 0; r < n; ++r) files.emplace_back(rank_file(dir, r));

  safetensors::NamedTensors out;
  for (size_t g = 0; g < layout.groups.size(); ++g) {
    const Group& group = layout.groups[g];
    const int64_t slice = group.padded_numel / n;
    const std::string key = "group." + std::to_string(g) + ".param";
    std::vector<torch::Tensor> parts;
    for (int64_t r = 0; r < n; ++r) {
      const auto& f = files[r];
      if (!f.contains(key)) fail(f.path(), "no tensor " + key + " (group " + std::to_string(g) + "'s slice)");
      torch::Tensor t = f.get(key);
      if (t.scalar_type() != torch::kFloat || t.dim() != 1 || t.numel() != slice)
        fail(f.path(), key + " is " + std::string(c10::toString(t.scalar_type())) + " " + c10::str(t.sizes()) +
                           ", expected Float [" + std::to_string(slice) + "] (padded_numel " +
                           std::to_string(group.padded_numel) + " / world_size " + std::to_string(n) + ")");
      parts.push_back(t);
    }
    const torch::Tensor full = parts.empty() ? torch::zeros({0}) : torch::cat(parts);
    for (const auto& p : group.params)
      out.emplace_back(p.name, full.narrow(0, p.offset, p.numel).view(p.shape).to(p.dtype).clone());
  }
  return out;
}

SavedModel merge_weights(const fs::path& checkpoint_dir, const fs::path& output_dir, const SaveModelOptions& options,
                         bool remove_checkpoint_dir) {
  if (remove_checkpoint_dir) {
    const fs::path ckpt = fs::weakly_canonical(checkpoint_dir), out = fs::weakly_canonical(output_dir);
    auto rel = out.lexically_relative(ckpt);
    if (!rel.empty() && *rel.begin() != "..")
      fail(output_dir, "lies inside the checkpoint folder " + checkpoint_dir.string() +
                           ", which --remove_checkpoint_dir would delete; write the merged weights elsewhere");
  }
  SavedModel saved = write_model_files(merged_zero_weights(checkpoint_dir), output_dir, options);
  if (remove_checkpoint_dir) fs::remove_all(checkpoint_dir);
  return saved;
}

}  // namespace accel
