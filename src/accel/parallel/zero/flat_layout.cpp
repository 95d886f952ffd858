#include "accel/parallel/zero/flat_layout.h"

#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/user_json.h"

namespace accel::zero {

namespace {
using json = nlohmann::json;
constexpr const char* kFormat = "accel-zero-v1";
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// An integer in [min, max], from `j[key]` (or `j` itself when key names an
// array element already picked); throws std::invalid_argument naming it.
int64_t field(const json& j, const std::string& key, int64_t min, int64_t max) {
  const json& v = j.is_object() ? j.at(key) : j;
  // nlohmann reads every non-negative integer as unsigned: the lower bound
  // applies to those too (a world_size of 0 passed here, then divided by).
  const bool fits = v.is_number_integer() &&
                    (v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(max) &&
                                                  (min <= 0 || v.get<uint64_t>() >= static_cast<uint64_t>(min))
                                            : v.get<int64_t>() >= min && v.get<int64_t>() <= max);
  ACCEL_CHECK_ARG(fits, key, " is ", json_excerpt(v), ", expected an integer from ", min, " to ", max);
  return v.get<int64_t>();
}
}  // namespace

std::string dtype_name(torch::ScalarType dtype) {
  return std::string(safetensors::dtype_name(safetensors::from_scalar_type(dtype)));
}

FlatLayout FlatLayout::build(const std::vector<std::vector<std::pair<std::string, torch::Tensor>>>& groups,
                             int world_size, ShardingStrategy strategy) {
  ACCEL_CHECK_ARG(world_size >= 1, "FlatLayout: world_size is ", world_size, ", expected >= 1");
  FlatLayout layout;
  layout.world_size = world_size;
  layout.strategy = strategy;
  for (const auto& group : groups) {
    FlatGroup g;
    int64_t offset = 0;
    for (const auto& [name, p] : group) {
      ACCEL_CHECK_ARG(p.is_floating_point(), "FlatLayout: parameter '", name, "' is ", c10::toString(p.scalar_type()),
                      ", expected a floating-point tensor");
      g.params.push_back(FlatParam{name, p.sizes().vec(), p.scalar_type(), offset, p.numel()});
      offset += p.numel();
    }
    // At least one element per rank, so every rank has a slice to step.
    g.padded_numel = std::max<int64_t>(1, (offset + world_size - 1) / world_size) * world_size;
    layout.groups.push_back(std::move(g));
  }
  return layout;
}

std::string FlatLayout::to_json() const {
  json gs = json::array();
  for (const auto& g : groups) {
    json ps = json::array();
    for (const auto& p : g.params)
      ps.push_back({{"name", p.name},
                    {"shape", p.shape},
                    {"dtype", dtype_name(p.dtype)},
                    {"offset", p.offset},
                    {"numel", p.numel}});
    gs.push_back({{"padded_numel", g.padded_numel}, {"params", ps}});
  }
  return json{{"format", kFormat}, {"world_size", world_size}, {"strategy", to_string(strategy)}, {"groups", gs}}.dump(
      2);
}

FlatLayout FlatLayout::from_json(const std::string& text, const std::string& source) {
  auto refuse = [&](const auto&... what) { fail<std::runtime_error>("ZeRO layout ", source, ": ", what...); };
  FlatLayout layout;
  try {
    const json j = parse_user_json(text);
    if (!j.is_object() || string_member(j, "format") != kFormat)
      refuse("not an accel ZeRO layout (expected \"format\": \"", kFormat, "\")");
    layout.world_size = static_cast<int>(field(j, "world_size", 1, std::numeric_limits<int>::max()));
    layout.strategy = parse_sharding_strategy(j.at("strategy").get<std::string>());
    for (const auto& jg : j.at("groups")) {
      FlatGroup g;
      g.padded_numel = field(jg, "padded_numel", 0, kMax);
      int64_t end = 0;
      for (const auto& jp : jg.at("params")) {
        FlatParam p;
        p.name = jp.at("name").get<std::string>();
        if (!jp.at("shape").is_array()) refuse("parameter '", excerpt(p.name), "': shape is not an array");
        for (const auto& d : jp.at("shape")) p.shape.push_back(field(d, "shape", 0, kMax));
        const auto dtype = jp.at("dtype").get<std::string>();
        const auto d = safetensors::dtype_from_name(dtype);
        if (!d)
          refuse("parameter '", excerpt(p.name), "' has dtype '", excerpt(dtype),
                 "', expected a safetensors dtype such as F32");
        p.dtype = safetensors::to_scalar_type(*d);
        p.offset = field(jp, "offset", 0, kMax);
        p.numel = field(jp, "numel", 0, kMax);
        const auto elements = element_count(p.shape);
        if (!elements) refuse("parameter '", excerpt(p.name), "': its shape's element count overflows int64");
        const int64_t n = *elements;
        // Parameters follow each other without overlapping, inside the group.
        if (n != p.numel || p.offset < end || p.offset > kMax - p.numel)
          refuse("parameter '", excerpt(p.name), "' has offset ", p.offset, " and numel ", p.numel, " for shape of ", n,
                 " elements after element ", end);
        end = p.offset + p.numel;
        g.params.push_back(std::move(p));
      }
      if (g.padded_numel < end || g.padded_numel % layout.world_size != 0)
        refuse("padded_numel ", g.padded_numel, " is not a multiple of world_size ", layout.world_size, " covering ",
               end, " elements");
      layout.groups.push_back(std::move(g));
    }
  } catch (const json::exception& e) {
    refuse("malformed (", e.what(), ")");
  } catch (const std::invalid_argument& e) {
    refuse(e.what());
  }
  return layout;
}

bool FlatLayout::same_parameters(const FlatLayout& other, std::string* why) const {
  auto differ = [&](const std::string& what) {
    if (why) *why = what;
    return false;
  };
  if (groups.size() != other.groups.size())
    return differ(std::to_string(groups.size()) + " param groups against " + std::to_string(other.groups.size()));
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& a = groups[g].params;
    const auto& b = other.groups[g].params;
    if (a.size() != b.size())
      return differ("param group " + std::to_string(g) + " has " + std::to_string(a.size()) + " parameters against " +
                    std::to_string(b.size()));
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == b[i]))
        return differ("param group " + std::to_string(g) + " parameter " + std::to_string(i) + " is '" + a[i].name +
                      "' " + c10::str(c10::IntArrayRef(a[i].shape)) + " " + dtype_name(a[i].dtype) + " against '" +
                      b[i].name + "' " + c10::str(c10::IntArrayRef(b[i].shape)) + " " + dtype_name(b[i].dtype));
  }
  return true;
}

}  // namespace accel::zero
