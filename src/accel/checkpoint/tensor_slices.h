#pragma once
// Slice files: tensors cut into 1-D slices spread over several safetensors
// files, each slice described in its file's metadata, so that what N
// processes wrote is read back by M (resharding) or merged into one tensor.
// Parameter sharding's SHARDED_STATE_DICT and its optimizer state use them.
//
// A slice file is a plain safetensors file (Python reads it). Its metadata
// entry "accel_slices" is a JSON object with, per sliced tensor of the file,
//   "<key in the file>": {"of": "<whole tensor>", "shape": [4, 3], "dtype": "BF16", "begin": 5}
// The tensor holds the elements [begin, begin + numel) of the whole tensor
// flattened in row-major order, in the file's dtype (which may differ from
// the whole's: fp32 masters of a bf16 parameter).
//
// A slice may instead be a block of the whole (what a tensor-parallel rank
// holds: a rowwise weight's columns, one of q/k/v's pieces, a range of
// vocabulary rows), recorded with "offset" in place of "begin":
//   "<key>": {"of": "<whole>", "shape": [8, 6], "dtype": "F32", "offset": [0, 3]}
// The tensor in the file has the block's shape, and sits at `offset` in
// the whole (here [8, 3]: columns 3..5 of every row).
//
// Slices of one whole may repeat each other exactly (replicas under hybrid
// sharding write the same ones; a pipeline's tied copies), but may not
// overlap otherwise: SliceSet refuses that, naming both.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"

namespace accel {

/// One slice to write.
struct Slice {
  std::string key;     // its name in the file
  torch::Tensor data;  // flattened when written
  std::string whole;   // the tensor it is part of
  std::vector<int64_t> shape;
  torch::ScalarType dtype = torch::kFloat;
  int64_t begin = 0;
  /// When set: the slice is a block of the whole at this offset (one per
  /// dimension of `shape`), `data` of the block's shape; `begin` unused.
  std::vector<int64_t> offset;
};

/// Writes `slices` (copied to the CPU) to `file` through a temporary name,
/// with the number of ranks writing such files ("world_size") and `extra`
/// metadata besides "accel_slices".
void save_slices(const std::vector<Slice>& slices, const std::filesystem::path& file, int world_size,
                 const safetensors::Metadata& extra = {});

/// The "world_size" a slice file records (headers only); throws naming the
/// file when it is missing or not a count of ranks.
int slice_file_world_size(const std::filesystem::path& file);

/// In a save_state folder, rank `rank`'s slices of model `index` under
/// SHARDED_STATE_DICT: model_fsdp_rank<r>.safetensors, model_1_fsdp_rank<r>...
std::string sharded_model_file_name(size_t index, int rank);

/// The slices of a set of files, read lazily (headers at construction).
class SliceSet {
 public:
  struct Whole {
    std::vector<int64_t> shape;
    torch::ScalarType dtype = torch::kFloat;
    int64_t numel = 0;
  };

  /// Throws std::runtime_error naming the file and key of malformed slice
  /// metadata, a slice past the end of its whole, two files that disagree
  /// on a whole's shape or dtype, or two slices that overlap without being
  /// the same elements.
  explicit SliceSet(const std::vector<std::filesystem::path>& files);

  /// The wholes, in the order first met (files in order, keys in their order).
  const std::vector<std::string>& wholes() const { return order_; }
  bool contains(const std::string& whole) const { return wholes_.count(whole) > 0; }
  const Whole& whole(const std::string& name) const;
  /// The metadata of the i-th file (as given to the constructor).
  const safetensors::Metadata& metadata(size_t file) const { return files_.at(file)->metadata(); }
  size_t num_files() const { return files_.size(); }

  /// Elements [begin, begin + numel) of `whole`, flattened, in `dtype`,
  /// from the slices covering them; throws naming the whole and the first
  /// element no slice holds.
  torch::Tensor read(const std::string& whole, int64_t begin, int64_t numel, torch::ScalarType dtype) const;
  /// The whole tensor, shaped, in its own dtype.
  torch::Tensor read_whole(const std::string& whole) const;
  /// The block of `whole` of shape `size` at `offset` (one per dimension),
  /// in `dtype`: a tensor-parallel rank's part, read without the rest.
  /// Throws naming the whole when the block does not fit in it or an
  /// element of it is in no slice.
  torch::Tensor read_block(const std::string& whole, const std::vector<int64_t>& offset,
                           const std::vector<int64_t>& size, torch::ScalarType dtype) const;

 private:
  // A run of consecutive elements of the whole: `numel` elements from
  // `begin`, stored in the file's tensor `key` (flattened) from `source`.
  struct Part {
    size_t file;
    std::string key;
    int64_t begin = 0, numel = 0, source = 0;
  };
  // Copies elements [begin, begin + out.numel()) of `whole` into `out`
  // (flat); `loaded` keeps the file tensors read so far. Returns the first
  // element no slice holds, or begin + out.numel().
  int64_t copy_run(const std::string& whole, int64_t begin, torch::Tensor& out,
                   std::map<std::pair<size_t, std::string>, torch::Tensor>& loaded) const;
  static std::vector<Part> block_runs(size_t file, const std::string& key, const std::vector<int64_t>& whole,
                                      const std::vector<int64_t>& offset, const std::vector<int64_t>& block);

  std::vector<std::unique_ptr<safetensors::File>> files_;
  std::vector<std::string> order_;
  std::map<std::string, Whole> wholes_;
  std::map<std::string, std::vector<Part>> parts_;  // per whole, sorted by begin
};

}  // namespace accel
