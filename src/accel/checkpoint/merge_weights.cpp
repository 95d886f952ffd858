#include "accel/checkpoint/merge_weights.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/safetensors.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/user_json.h"

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

/// Refuses the checkpoint: the file or folder `where`, then the parts of the problem.
template <typename... Parts>
[[noreturn]] void reject(const fs::path& where, const Parts&... what) {
  fail<std::runtime_error>(where.string(), ": ", what...);
}

int64_t get_int(const fs::path& file, const json& j, const std::string& key, const std::string& where, int64_t min) {
  auto it = j.find(key);
  if (it == j.end() || !(it->is_number_integer() || it->is_number_unsigned()) || it->get<int64_t>() < min)
    reject(file, where, key, " = ", it == j.end() ? std::string("(missing)") : json_excerpt(*it),
           ": expected an integer >= ", min);
  return it->get<int64_t>();
}

torch::ScalarType layout_dtype(const fs::path& file, const json& v, const std::string& where) {
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (s == "F32") return torch::kFloat;
  if (s == "BF16") return torch::kBFloat16;
  if (s == "F16") return torch::kHalf;
  reject(file, where, "dtype = ", json_excerpt(v), ": expected \"F32\", \"BF16\" or \"F16\"");
}

// Parameters share a group's flat buffer, each in its own range: two that
// overlap would merge as copies of the same elements.
void check_no_overlap(const fs::path& file, const Group& group, const std::string& where) {
  std::vector<const ParamEntry*> by_offset;
  for (const auto& p : group.params)
    if (p.numel > 0) by_offset.push_back(&p);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const ParamEntry& a = *by_offset[i - 1];
    const ParamEntry& b = *by_offset[i];
    if (b.offset < a.offset + a.numel)
      reject(file, where, "params \"", excerpt(a.name), "\" (elements ", a.offset, "..", a.offset + a.numel, ") and \"",
             excerpt(b.name), "\" (elements ", b.offset, "..", b.offset + b.numel,
             ") overlap: expected each parameter in its own range");
  }
}

Layout read_layout(const fs::path& dir) {
  const fs::path file = dir / "zero_layout.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::string hint;
    if (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"))
      hint = " (its model.safetensors is already the merged model)";
    if (!fs::is_directory(dir)) reject(dir, "no such folder");
    reject(dir, "no zero_layout.json: not a sharded (ZeRO) checkpoint", hint);
  }
  json j;
  try {
    j = parse_user_json(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  } catch (const std::invalid_argument& e) {
    reject(file, e.what());
  }
  if (!j.is_object() || string_member(j, "format") != "accel-zero-v1")
    reject(file,
           "format = ", j.is_object() && j.contains("format") ? json_excerpt(j["format"]) : std::string("(missing)"),
           ": expected \"accel-zero-v1\"");
  Layout layout;
  layout.world_size = get_int(file, j, "world_size", "", 1);
  if (!j.contains("groups") || !j["groups"].is_array()) reject(file, "groups: expected an array");
  std::set<std::string> names;
  for (size_t g = 0; g < j["groups"].size(); ++g) {
    const json& jg = j["groups"][g];
    const std::string where = "groups[" + std::to_string(g) + "].";
    if (!jg.is_object()) reject(file, where, ": expected an object");
    Group group;
    group.padded_numel = get_int(file, jg, "padded_numel", where, 0);
    if (group.padded_numel % layout.world_size != 0)
      reject(file, where, "padded_numel = ", group.padded_numel, ": expected a multiple of world_size ",
             layout.world_size);
    if (!jg.contains("params") || !jg["params"].is_array()) reject(file, where, "params: expected an array");
    for (size_t i = 0; i < jg["params"].size(); ++i) {
      const json& jp = jg["params"][i];
      const std::string pw = where + "params[" + std::to_string(i) + "].";
      if (!jp.is_object() || !jp.contains("name") || !jp["name"].is_string() || jp["name"].get<std::string>().empty())
        reject(file, pw, "name: expected a non-empty string");
      ParamEntry p;
      p.name = jp["name"].get<std::string>();
      if (!names.insert(p.name).second) reject(file, pw, "name \"", excerpt(p.name), "\" appears twice");
      if (!jp.contains("shape") || !jp["shape"].is_array()) reject(file, pw, "shape: expected an array of sizes");
      // The element count must fit int64 (what ATen indexes with) whatever
      // the order of the sizes: [0, 2^62, 2^62] is refused too.
      for (const auto& d : jp["shape"]) {
        if (!d.is_number_integer() || (d.is_number_unsigned() && d.get<uint64_t>() > INT64_MAX) || d.get<int64_t>() < 0)
          reject(file, pw, "shape = ", json_excerpt(jp["shape"]), ": expected sizes >= 0");
        p.shape.push_back(d.get<int64_t>());
      }
      const auto elements = element_count(p.shape);
      if (!elements) reject(file, pw, "shape = ", json_excerpt(jp["shape"]), ": its element count overflows int64");
      const int64_t count = *elements;
      p.dtype = layout_dtype(file, jp.value("dtype", json()), pw);
      p.offset = get_int(file, jp, "offset", pw, 0);
      p.numel = get_int(file, jp, "numel", pw, 0);
      if (p.numel != count)
        reject(file, pw, "numel = ", p.numel, " but shape ", json_excerpt(jp["shape"]), " has ", count, " elements");
      if (p.offset > group.padded_numel - p.numel)  // offset + numel, without overflowing
        reject(file, pw, "\"", excerpt(p.name), "\" at offset ", p.offset, " with ", p.numel,
               " elements ends past the group's padded_numel ", group.padded_numel);
      group.params.push_back(std::move(p));
    }
    check_no_overlap(file, group, where);
    layout.groups.push_back(std::move(group));
  }
  return layout;
}

// The rank of a file named zero_shard_rank<r>.safetensors, or -1.
int64_t shard_rank(const std::string& name) {
  static const std::string prefix = "zero_shard_rank", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix)) return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  int64_t rank = 0;
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), rank);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || rank < 0) return -1;
  // Only the name save_state writes (no leading zeros) is that rank's file.
  return std::to_string(rank) == digits ? rank : -1;
}

fs::path rank_file(const fs::path& dir, int64_t rank) {
  return dir / ("zero_shard_rank" + std::to_string(rank) + ".safetensors");
}

}  // namespace

safetensors::NamedTensors merged_zero_weights(const fs::path& dir) {
  const Layout layout = read_layout(dir);
  const int64_t n = layout.world_size;
  // Every problem with the set of files at once: missing ranks, extra ranks.
  // The work is bounded by the files that exist, not by world_size (a
  // layout may claim any number of ranks).
  std::set<int64_t> present;
  std::vector<std::string> extra;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const int64_t r = shard_rank(name);
    if (r >= n || (r < 0 && name.starts_with("zero_shard_rank") && name.ends_with(".safetensors")))
      extra.push_back(excerpt(name));
    else if (r >= 0)
      present.insert(r);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 20; ++i) s += (s.empty() ? "" : ", ") + v[i];
    if (v.size() > 20) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  if (static_cast<int64_t>(present.size()) < n) {
    // At most 20 missing ranks named, found in O(files present + 20).
    std::vector<std::string> missing;
    for (int64_t r = 0; r < n && missing.size() < 20; ++r)
      if (!present.count(r)) missing.push_back(std::to_string(r));
    const int64_t count = n - static_cast<int64_t>(present.size());
    const std::string more =
        count > static_cast<int64_t>(missing.size()) ? ", ... (" + std::to_string(count) + " in all)" : "";
    reject(dir, "world_size is ", n, " but the shard files of rank(s) ", join(missing), more,
           " are missing (zero_shard_rank<r>.safetensors; ", present.size(), " found)");
  }
  if (!extra.empty())
    reject(dir, "world_size is ", n, " but there are shard files of other ranks: ", join(extra),
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
      if (!f.contains(key)) reject(f.path(), "no tensor ", key, " (group ", g, "'s slice)");
      torch::Tensor t = f.get(key);
      if (t.scalar_type() != torch::kFloat || t.dim() != 1 || t.numel() != slice)
        reject(f.path(), key, " is ", c10::toString(t.scalar_type()), " ", c10::str(t.sizes()), ", expected Float [",
               slice, "] (padded_numel ", group.padded_numel, " / world_size ", n, ")");
      parts.push_back(t);
    }
    const torch::Tensor full = parts.empty() ? torch::zeros({0}) : torch::cat(parts);
    for (const auto& p : group.params)
      out.emplace_back(p.name, full.narrow(0, p.offset, p.numel).view(p.shape).to(p.dtype).clone());
  }
  return out;
}

safetensors::NamedTensors merged_sliced_weights(const fs::path& dir) {
  // model_fsdp_rank<r>.safetensors for r < the world_size rank 0's file records.
  const auto first = dir / sharded_model_file_name(0, 0);
  if (!fs::exists(first)) reject(dir, "no ", first.filename().string(), " (the sharded model's file of rank 0)");
  const int n = slice_file_world_size(first);
  if (fs::exists(dir / sharded_model_file_name(0, n)))
    reject(dir, "world_size is ", n, " but there is a sharded model file of rank ", n,
           " (files of another save mixed in?)");
  std::string missing;
  int found = 0;
  for (int r = 0; r < n; ++r) {
    if (fs::exists(dir / sharded_model_file_name(0, r)))
      ++found;
    else if (missing.size() < 200)
      missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (found != n)
    reject(dir, "world_size is ", n, " but the sharded model's files of rank(s) ", missing, " are missing (",
           "model_fsdp_rank<r>.safetensors; ", found, " found)");
  std::vector<fs::path> files;
  for (int r = 0; r < n; ++r) files.push_back(dir / sharded_model_file_name(0, r));
  const SliceSet slices(files);
  safetensors::NamedTensors out;
  for (const auto& name : slices.wholes()) out.emplace_back(name, slices.read_whole(name));
  return out;
}

SavedModel merge_weights(const fs::path& checkpoint_dir, const fs::path& output_dir, const SaveModelOptions& options,
                         bool remove_checkpoint_dir) {
  if (remove_checkpoint_dir) {
    const fs::path ckpt = fs::weakly_canonical(checkpoint_dir), out = fs::weakly_canonical(output_dir);
    auto rel = out.lexically_relative(ckpt);
    if (!rel.empty() && *rel.begin() != "..")
      reject(output_dir, "lies inside the checkpoint folder ", checkpoint_dir.string(),
             ", which --remove_checkpoint_dir would delete; write the merged weights elsewhere");
  }
  const bool sliced = fs::exists(checkpoint_dir / sharded_model_file_name(0, 0));
  SavedModel saved = write_model_files(
      sliced ? merged_sliced_weights(checkpoint_dir) : merged_zero_weights(checkpoint_dir), output_dir, options);
  if (remove_checkpoint_dir) fs::remove_all(checkpoint_dir);
  return saved;
}

}  // namespace accel
