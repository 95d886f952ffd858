// ParallelismConfig's rules and mesh layout, following Accelerate 1.15's
// parallelism_config.py (__post_init__, _get_mesh, build_device_mesh).
#include "accel/parallel/mesh/parallelism_config.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "accel/util/check.h"

namespace accel {
namespace {

struct Dim {
  const char* name;
  int size;
};

// Mesh order: pp outermost (TorchTitan), then Accelerate's canonical order
// dp_replicate, dp_shard, cp, tp.
std::vector<Dim> all_dims(const ParallelismConfig& c) {
  return {{"pp", c.pp_size},
          {"dp_replicate", c.dp_replicate_size},
          {"dp_shard", c.dp_shard_size},
          {"cp", c.cp_size},
          {"tp", c.tp_size}};
}

void check_at_least_one(const char* name, int size) {
  if (size < 1) fail<std::invalid_argument>(name, " must be at least 1, but got ", size);
}

}  // namespace

void ParallelismConfig::validate() const {
  check_at_least_one("dp_replicate_size", dp_replicate_size);
  check_at_least_one("dp_shard_size", dp_shard_size);
  check_at_least_one("tp_size", tp_size);
  check_at_least_one("cp_size", cp_size);
  check_at_least_one("pp_size", pp_size);
  // Accelerate checks the strategy only where cp is on (its cp handler).
  if (cp_size > 1 && cp_comm_strategy != "allgather" && cp_comm_strategy != "alltoall")
    fail<std::invalid_argument>("cp_comm_strategy must be 'allgather' or 'alltoall', but got '", cp_comm_strategy, "'");
  if ((tp_size > 1 || cp_size > 1) && dp_replicate_size > 1 && dp_shard_size == 1)
    fail<std::invalid_argument>("tensor/context parallelism (tp_size=", tp_size, ", cp_size=", cp_size,
                                ") cannot be used with pure data parallelism (dp_replicate_size=", dp_replicate_size,
                                ", dp_shard_size=1): set dp_shard_size > 1 for FSDP + TP/CP, or keep "
                                "dp_replicate_size > 1 with dp_shard_size > 1 for HSDP + TP/CP");
}

int ParallelismConfig::total_size() const { return dp_replicate_size * dp_shard_size * tp_size * cp_size * pp_size; }

void ParallelismConfig::check_world_size(int world_size) const {
  if (total_size() != world_size)
    fail<std::invalid_argument>("ParallelismConfig total_size (", total_size(), " = pp_size ", pp_size,
                                " x dp_replicate_size ", dp_replicate_size, " x dp_shard_size ", dp_shard_size,
                                " x cp_size ", cp_size, " x tp_size ", tp_size, ") does not match the world size (",
                                world_size, ")");
}

std::vector<std::string> ParallelismConfig::mesh_dim_names() const {
  std::vector<std::string> names;
  for (const Dim& d : all_dims(*this))
    if (d.size > 1) names.emplace_back(d.name);
  return names;
}

std::vector<int> ParallelismConfig::mesh_shape() const {
  std::vector<int> shape;
  for (const Dim& d : all_dims(*this))
    if (d.size > 1) shape.push_back(d.size);
  return shape;
}

std::vector<ParallelismConfig::Flattened> ParallelismConfig::flattened_dims() const {
  auto active = [](std::initializer_list<std::pair<const char*, int>> dims) {
    std::vector<std::string> out;
    for (const auto& [name, size] : dims)
      if (size > 1) out.emplace_back(name);
    return out;
  };
  std::vector<Flattened> out;
  auto add = [&](const char* name, std::vector<std::string> members) {
    if (!members.empty()) out.push_back({name, std::move(members)});
  };
  add("dp", active({{"dp_replicate", dp_replicate_size}, {"dp_shard", dp_shard_size}}));
  add("dp_shard_cp", active({{"dp_shard", dp_shard_size}, {"cp", cp_size}}));
  add("dp_cp", active({{"dp_replicate", dp_replicate_size}, {"dp_shard", dp_shard_size}, {"cp", cp_size}}));
  return out;
}

std::optional<ParallelismConfig> ParallelismConfig::from_env(const EnvLookup& env) {
  // Accelerate compares the lowered value with "true" and nothing else.
  std::string use = env_string(env, "ACCELERATE_USE_PARALLELISM_CONFIG").value_or("false");
  std::transform(use.begin(), use.end(), use.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (use != "true") return std::nullopt;
  ParallelismConfig c;
  auto size = [&](const char* name, int& field) {
    if (auto v = env_int(env, name)) field = static_cast<int>(*v);
  };
  size("PARALLELISM_CONFIG_DP_REPLICATE_SIZE", c.dp_replicate_size);
  size("PARALLELISM_CONFIG_DP_SHARD_SIZE", c.dp_shard_size);
  size("PARALLELISM_CONFIG_TP_SIZE", c.tp_size);
  size("PARALLELISM_CONFIG_CP_SIZE", c.cp_size);
  size("PARALLELISM_CONFIG_PP_SIZE", c.pp_size);
  if (auto s = env_string(env, "PARALLELISM_CONFIG_CP_COMM_STRATEGY")) c.cp_comm_strategy = *s;
  c.validate();
  return c;
}

std::vector<int> mesh_coordinates(const std::vector<int>& shape, int rank) {
  long world = 1;
  for (int s : shape) world *= s;
  if (rank < 0 || rank >= world) fail<std::invalid_argument>("rank ", rank, " is outside a mesh of ", world, " ranks");
  std::vector<int> coords(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    coords[i] = rank % shape[i];
    rank /= shape[i];
  }
  return coords;
}

}  // namespace accel
