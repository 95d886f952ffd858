// Block slices of the slice format (src/accel/checkpoint/tensor_slices.h):
// a block at an offset in its whole, any number of dimensions, any of them
// partial. Tiles of a [2, 6, 4] tensor cut along its middle and last
// dimensions (runs of a few elements, not contiguous in the whole), spread
// over two files, read back whole and by flat ranges; then a tile shifted
// onto its neighbour, and a tile left out, refused by name.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/checkpoint/tensor_slices.h"
#include "support/errors.h"
#include "support/temp_dir.h"

using namespace accel;

namespace {

const std::vector<int64_t> kShape{2, 6, 4};

torch::Tensor whole() { return torch::arange(48, torch::kFloat).view(kShape); }

// The block of `whole()` at (0, row, col) of [2, rows, cols].
Slice tile(const std::string& key, int64_t row, int64_t rows, int64_t col, int64_t cols) {
  return Slice{key, whole().narrow(1, row, rows).narrow(2, col, cols), "w", kShape, torch::kFloat, 0, {0, row, col}};
}

}  // namespace

TEST(TensorSliceBlocks, TilesOfAnyDimensionReadBackWhole) {
  const accel::testing::TempDir dir("slice_blocks");
  // Rows 0..3 in two column halves, rows 4..5 whole in the other file.
  save_slices({tile("a", 0, 4, 0, 2), tile("b", 0, 4, 2, 2)}, dir / "0.safetensors", 2);
  save_slices({tile("c", 4, 2, 0, 4)}, dir / "1.safetensors", 2);
  const SliceSet set({dir / "0.safetensors", dir / "1.safetensors"});
  EXPECT_TRUE(set.read_whole("w").equal(whole()));
  // A flat range that crosses tiles and files.
  EXPECT_TRUE(set.read("w", 13, 20, torch::kDouble).equal(whole().reshape(-1).narrow(0, 13, 20).to(torch::kDouble)));
}

TEST(TensorSliceBlocks, OverlapsAndGapsAreNamed) {
  const accel::testing::TempDir dir("slice_blocks_bad");
  save_slices({tile("a", 0, 3, 0, 4)}, dir / "0.safetensors", 2);
  save_slices({tile("b", 2, 4, 0, 4)}, dir / "1.safetensors", 2);  // row 2 twice
  accel::testing::expect_error(
      [&] {
        SliceSet({dir / "0.safetensors", dir / "1.safetensors"});
      },
      {"the slices of 'w' overlap", "0.safetensors", "1.safetensors"});
  // The same tile twice is a replica, accepted; rows 3..5 then missing.
  save_slices({tile("b", 0, 3, 0, 4)}, dir / "1.safetensors", 2);
  const SliceSet repeated({dir / "0.safetensors", dir / "1.safetensors"});
  accel::testing::expect_error([&] { repeated.read_whole("w"); }, {"'w'", "do not hold element 12"});
  // A block that does not fit in its whole.
  save_slices({tile("a", 0, 3, 0, 4)}, dir / "0.safetensors", 1);
  accel::testing::expect_error(
      [&] {
        save_slices({Slice{"x", torch::zeros({2, 3, 4}), "w", kShape, torch::kFloat, 0, {0, 4, 0}}},
                    dir / "2.safetensors", 1);
      },
      {"'x'", "does not fit"});
}
