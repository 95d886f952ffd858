#pragma once
// FlatLayout: where each parameter lives in ZeRO's flat buffers. The
// parameters of each optimizer param group are laid end to end, in the
// group's order, in one flat buffer per group, padded at the end so that
// its length is a multiple of the world size; rank r owns the elements
// [r * S, (r + 1) * S) with S = padded_numel / world_size. Gradients,
// fp32 master weights and optimizer state use the same layout, so a rank's
// share of each is one contiguous slice. (ZeRO-3 will shard the parameters
// themselves along it.)
//
// Checkpoints record it as zero_layout.json (to_json / from_json):
//   {"format": "accel-zero-v1", "world_size": 2, "strategy": "shard_grad_op",
//    "groups": [{"padded_numel": 40, "params": [{"name": "fc1.weight", "shape": [4, 3],
//                "dtype": "F32", "offset": 0, "numel": 12}, ...]}, ...]}
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "accel/parallel/sharding_options.h"
#include "accel/util/export.h"

namespace accel::zero {

struct ACCEL_API FlatParam {
  /// The parameter's name in the unwrapped model (named_parameters()).
  std::string name;
  std::vector<int64_t> shape;
  torch::ScalarType dtype = torch::kFloat;
  /// First element in the group's flat buffer.
  int64_t offset = 0;
  int64_t numel = 0;

  bool operator==(const FlatParam&) const = default;
};

struct ACCEL_API FlatGroup {
  std::vector<FlatParam> params;
  /// Sum of the params' numel rounded up to a multiple of the world size.
  int64_t padded_numel = 0;

  bool operator==(const FlatGroup&) const = default;
};

/// A [begin, end) range of flat elements.
using FlatRange = std::pair<int64_t, int64_t>;

struct ACCEL_API FlatLayout {
  int world_size = 1;
  ShardingStrategy strategy = ShardingStrategy::shard_grad_op;
  std::vector<FlatGroup> groups;

  /// S: the elements of group `g` each rank owns.
  int64_t slice_numel(size_t g) const { return groups.at(g).padded_numel / world_size; }
  /// The elements of group `g` that rank `rank` owns.
  FlatRange rank_range(size_t g, int rank) const {
    const int64_t s = slice_numel(g);
    return {rank * s, (rank + 1) * s};
  }

  /// Lays out `groups` (each a list of (name, parameter)) for `world_size`
  /// ranks. Throws std::invalid_argument for world_size < 1, or a
  /// parameter that is not floating point (naming it).
  static FlatLayout build(const std::vector<std::vector<std::pair<std::string, torch::Tensor>>>& groups, int world_size,
                          ShardingStrategy strategy);

  /// zero_layout.json's text.
  std::string to_json() const;
  /// Parses zero_layout.json; throws std::runtime_error naming `source` and
  /// what is missing or malformed.
  static FlatLayout from_json(const std::string& text, const std::string& source);

  /// Whether the parameters (names, shapes, dtypes, places) are the same,
  /// ignoring world size and strategy; else `why` says where they differ.
  bool same_parameters(const FlatLayout& other, std::string* why = nullptr) const;
  bool operator==(const FlatLayout&) const = default;
};

/// The safetensors name of a dtype ("F32", "BF16", "F16", ...).
ACCEL_API std::string dtype_name(torch::ScalarType dtype);

}  // namespace accel::zero
