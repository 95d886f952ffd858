#include "accel/checkpoint/tensor_slices.h"

#include <algorithm>
#include <charconv>
#include <iterator>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/safetensors_format.h"
#include "accel/util/check.h"
#include "accel/util/user_json.h"

namespace accel {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kSlicesKey = "accel_slices";
constexpr const char* kWorldSizeKey = "world_size";

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

}  // namespace

// The runs of consecutive whole elements that a block at `offset` covers,
// in the block's row-major order: the trailing dimensions the block spans
// fully join its innermost partial one into each run.
std::vector<SliceSet::Part> SliceSet::block_runs(size_t file, const std::string& key, const std::vector<int64_t>& whole,
                                                 const std::vector<int64_t>& offset,
                                                 const std::vector<int64_t>& block) {
  const auto n = whole.size();
  if (numel_of(block) == 0) return {};
  if (n == 0) return {{file, key, 0, 1, 0}};
  std::vector<int64_t> stride(n, 1);
  for (size_t d = n - 1; d > 0; --d) stride[d - 1] = stride[d] * whole[d];
  size_t inner = n - 1;  // the outermost dimension of the contiguous run
  while (inner > 0 && block[inner] == whole[inner]) --inner;
  const int64_t run = numel_of(std::vector<int64_t>(block.begin() + static_cast<std::ptrdiff_t>(inner), block.end()));
  const int64_t count = numel_of(block) / run;
  std::vector<Part> out;
  out.reserve(static_cast<size_t>(count));
  std::vector<int64_t> index(inner, 0);  // over the dimensions before `inner`
  for (int64_t r = 0; r < count; ++r) {
    int64_t begin = 0;
    for (size_t d = 0; d < inner; ++d) begin += (offset[d] + index[d]) * stride[d];
    begin += offset[inner] * stride[inner];
    out.push_back({file, key, begin, run, r * run});
    for (size_t d = inner; d-- > 0;) {  // the next index, row-major
      if (++index[d] < block[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

void save_slices(const std::vector<Slice>& slices, const fs::path& file, int world_size,
                 const safetensors::Metadata& extra) {
  safetensors::NamedTensors tensors;
  json index = json::object();
  for (const auto& s : slices) {
    if (!s.offset.empty()) {
      auto block = s.data.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true).contiguous();
      bool fits = s.offset.size() == s.shape.size() && block.dim() == static_cast<int64_t>(s.shape.size());
      for (size_t d = 0; fits && d < s.shape.size(); ++d)
        fits = s.offset[d] >= 0 && s.offset[d] + block.size(static_cast<int64_t>(d)) <= s.shape[d];
      ACCEL_CHECK_ARG(fits, "save_slices: slice '", s.key, "' of '", s.whole, "' is a block of ", block.sizes(),
                      " at offset ", c10::IntArrayRef(s.offset), ", which does not fit in ", c10::IntArrayRef(s.shape));
      index[s.key] = {{"of", s.whole},
                      {"shape", s.shape},
                      {"dtype", std::string(safetensors::dtype_name(safetensors::from_scalar_type(s.dtype)))},
                      {"offset", s.offset}};
      tensors.emplace_back(s.key, std::move(block));
      continue;
    }
    auto flat = s.data.detach().reshape({-1}).to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
    ACCEL_CHECK_ARG(s.begin >= 0 && s.begin + flat.numel() <= numel_of(s.shape), "save_slices: slice '", s.key,
                    "' of '", s.whole, "' holds [", s.begin, ", ", s.begin + flat.numel(), "), past its ",
                    numel_of(s.shape), " elements");
    index[s.key] = {{"of", s.whole},
                    {"shape", s.shape},
                    {"dtype", std::string(safetensors::dtype_name(safetensors::from_scalar_type(s.dtype)))},
                    {"begin", s.begin}};
    tensors.emplace_back(s.key, std::move(flat));
  }
  safetensors::Metadata metadata = extra;
  metadata[kSlicesKey] = index.dump();
  metadata[kWorldSizeKey] = std::to_string(world_size);
  safetensors::save_file(tensors, file, metadata);
}

int slice_file_world_size(const fs::path& file) {
  const auto metadata = safetensors::load_metadata(file);
  auto it = metadata.find(kWorldSizeKey);
  int n = 0;
  if (it != metadata.end()) {
    auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
    if (ec != std::errc() || end != it->second.data() + it->second.size()) n = 0;
  }
  ACCEL_CHECK(n >= 1, "'", file.string(), "': metadata world_size ",
              it == metadata.end() ? std::string("(missing)") : "\"" + it->second + "\"",
              ": expected the number of ranks that wrote the checkpoint");
  return n;
}

std::string sharded_model_file_name(size_t index, int rank) {
  // numbered("model", index, "")'s rule, without its file (the fuzz targets link this one alone).
  return (index == 0 ? std::string("model") : "model_" + std::to_string(index)) + "_fsdp_rank" + std::to_string(rank) +
         ".safetensors";
}

SliceSet::SliceSet(const std::vector<fs::path>& files) {
  for (size_t f = 0; f < files.size(); ++f) {
    files_.push_back(std::make_unique<safetensors::File>(files[f]));
    const auto& file = *files_.back();
    auto it = file.metadata().find(kSlicesKey);
    ACCEL_CHECK(it != file.metadata().end(), "'", files[f].string(), "' holds no slice index (metadata \"", kSlicesKey,
                "\"): not a sharded checkpoint file of accel");
    json index;
    try {
      index = parse_user_json(it->second);
    } catch (const std::invalid_argument& e) {
      fail<std::runtime_error>("'", files[f].string(), "': metadata \"", kSlicesKey, "\": ", e.what());
    }
    ACCEL_CHECK(index.is_object(), "'", files[f].string(), "': metadata \"", kSlicesKey, "\" is not a JSON object");
    for (const auto& item : index.items()) {
      // Named, not a structured binding: lambdas may not capture those (before C++20, and in clang 14).
      const std::string key = item.key();
      const json& entry = item.value();
      auto bad = [&](const auto&... what) {
        fail<std::runtime_error>("'", files[f].string(), "': slice '", key, "': ", what...);
      };
      if (!file.contains(key)) bad("listed in the metadata but not in the file");
      if (!entry.is_object() || !entry.contains("of") || !entry["of"].is_string()) bad("no \"of\" (the whole's name)");
      Whole w;
      if (!entry.contains("shape") || !entry["shape"].is_array()) bad("no \"shape\" array");
      for (const auto& d : entry["shape"]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          bad("shape ", json_excerpt(entry["shape"]), ": expected non-negative integers");
        w.shape.push_back(d.get<int64_t>());
      }
      w.numel = numel_of(w.shape);
      const auto dtype = entry.contains("dtype") && entry["dtype"].is_string()
                             ? safetensors::dtype_from_name(entry["dtype"].get<std::string>())
                             : std::nullopt;
      if (!dtype) bad("dtype ", json_excerpt(entry.value("dtype", json())), ": expected a safetensors dtype name");
      w.dtype = safetensors::to_scalar_type(*dtype);
      std::vector<Part> runs;
      if (entry.contains("offset")) {
        const std::vector<int64_t> block = file.info(key).shape;
        std::vector<int64_t> offset;
        if (entry["offset"].is_array())
          for (const auto& o : entry["offset"]) offset.push_back(o.is_number_integer() ? o.get<int64_t>() : -1);
        bool fits = entry["offset"].is_array() && offset.size() == w.shape.size() && block.size() == w.shape.size();
        for (size_t d = 0; fits && d < offset.size(); ++d) fits = offset[d] >= 0 && offset[d] + block[d] <= w.shape[d];
        if (!fits)
          bad("a block of ", json(block).dump(), " at offset ", json_excerpt(entry["offset"]),
              ": expected non-negative integers placing it inside ", json(w.shape).dump());
        runs = block_runs(f, key, w.shape, offset, block);
      } else {
        if (!entry.contains("begin") || !entry["begin"].is_number_integer() || entry["begin"].get<int64_t>() < 0)
          bad("begin ", json_excerpt(entry.value("begin", json())), ": expected an integer >= 0");
        Part part{f, key, entry["begin"].get<int64_t>(), numel_of(file.info(key).shape)};
        if (part.begin + part.numel > w.numel)
          bad("holds elements [", part.begin, ", ", part.begin + part.numel, ") of a tensor of ", w.numel);
        if (part.numel > 0) runs.push_back(std::move(part));  // an empty one places nothing
      }
      const std::string of = entry["of"].get<std::string>();
      auto [known, added] = wholes_.emplace(of, w);
      if (added) order_.push_back(of);
      if (known->second.shape != w.shape || known->second.dtype != w.dtype)
        bad("'", of, "' has shape ", json(w.shape).dump(), " here and ", json(known->second.shape).dump(),
            " (or another dtype) in an earlier file");
      auto& parts = parts_[of];
      parts.insert(parts.end(), std::make_move_iterator(runs.begin()), std::make_move_iterator(runs.end()));
    }
  }
  for (auto& [name, parts] : parts_) {
    std::stable_sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.begin < b.begin; });
    // Exact repeats are replicas; any other overlap means two writers
    // claimed some of the same elements (a mislabelled rank, mixed saves).
    const Part* reach = nullptr;  // the part that reaches furthest so far
    for (const auto& part : parts) {
      if (reach && part.begin < reach->begin + reach->numel &&
          !(part.begin == reach->begin && part.numel == reach->numel))
        fail<std::runtime_error>("the slices of '", name, "' overlap: '", files[reach->file].string(), "' (",
                                 reach->key, ") holds elements [", reach->begin, ", ", reach->begin + reach->numel,
                                 ") and '", files[part.file].string(), "' (", part.key, ") holds [", part.begin, ", ",
                                 part.begin + part.numel, "): files of different saves or layouts mixed?");
      if (!reach || part.begin + part.numel > reach->begin + reach->numel) reach = &part;
    }
  }
}

const SliceSet::Whole& SliceSet::whole(const std::string& name) const {
  auto it = wholes_.find(name);
  ACCEL_CHECK(it != wholes_.end(), "the checkpoint holds no slice of '", name, "'");
  return it->second;
}

int64_t SliceSet::copy_run(const std::string& name, int64_t begin, torch::Tensor& out,
                           std::map<std::pair<size_t, std::string>, torch::Tensor>& loaded) const {
  int64_t at = begin;
  const int64_t end = begin + out.numel();
  const auto& parts = parts_.at(name);
  // The last part starting at or before `begin`, then forward.
  auto it = std::upper_bound(parts.begin(), parts.end(), begin,
                             [](int64_t value, const Part& part) { return value < part.begin; });
  // Exact repeats and shorter runs may precede it: step back over every part reaching past `begin`.
  while (it != parts.begin() && std::prev(it)->begin + std::prev(it)->numel > begin) --it;
  for (; it != parts.end(); ++it) {
    const auto& part = *it;
    if (at >= end) break;
    const int64_t part_end = part.begin + part.numel;
    if (part_end <= at) continue;
    if (part.begin > at) break;  // a gap
    const int64_t stop = std::min(end, part_end);
    auto& tensor = loaded[{part.file, part.key}];
    if (!tensor.defined()) tensor = files_[part.file]->get(part.key).reshape({-1});
    auto src = tensor.narrow(0, part.source + at - part.begin, stop - at);
    out.narrow(0, at - begin, stop - at).copy_(src);
    at = stop;
  }
  return at;
}

torch::Tensor SliceSet::read(const std::string& name, int64_t begin, int64_t numel, torch::ScalarType dtype) const {
  const Whole& w = whole(name);
  ACCEL_CHECK(begin >= 0 && numel >= 0 && begin + numel <= w.numel, "reading elements [", begin, ", ", begin + numel,
              ") of '", name, "', which has ", w.numel);
  auto out = torch::empty({numel}, torch::dtype(dtype));
  // A block is many runs of one tensor: read each tensor once.
  std::map<std::pair<size_t, std::string>, torch::Tensor> loaded;
  const int64_t at = copy_run(name, begin, out, loaded);
  ACCEL_CHECK(at >= begin + numel, "the checkpoint's slices of '", name, "' do not hold element ", at, " (of ", w.numel,
              "): a rank's file is missing or was written by another model");
  return out;
}

torch::Tensor SliceSet::read_block(const std::string& name, const std::vector<int64_t>& offset,
                                   const std::vector<int64_t>& size, torch::ScalarType dtype) const {
  const Whole& w = whole(name);
  bool fits = offset.size() == w.shape.size() && size.size() == w.shape.size();
  for (size_t d = 0; fits && d < size.size(); ++d)
    fits = offset[d] >= 0 && size[d] >= 0 && offset[d] + size[d] <= w.shape[d];
  ACCEL_CHECK(fits, "reading a block of ", c10::IntArrayRef(size), " at ", c10::IntArrayRef(offset), " of '", name,
              "', which is ", c10::IntArrayRef(w.shape));
  auto out = torch::empty({numel_of(size)}, torch::dtype(dtype));
  std::map<std::pair<size_t, std::string>, torch::Tensor> loaded;
  for (const auto& run : block_runs(0, "", w.shape, offset, size)) {
    auto into = out.narrow(0, run.source, run.numel);
    const int64_t at = copy_run(name, run.begin, into, loaded);
    ACCEL_CHECK(at >= run.begin + run.numel, "the checkpoint's slices of '", name, "' do not hold element ", at,
                " (of ", w.numel, "): a rank's file is missing or was written by another model");
  }
  return out.view(size);
}

torch::Tensor SliceSet::read_whole(const std::string& name) const {
  const Whole& w = whole(name);
  return read(name, 0, w.numel, w.dtype).view(w.shape);
}

}  // namespace accel
