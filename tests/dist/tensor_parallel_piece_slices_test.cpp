// The offsets of a parameter-sharding piece of a tensor-parallel slice
// (checkpoint/tensor_parallel_slices.h): a flat range of a rank's slice,
// written as blocks of the whole tensor, read back by any range.
//
// GPT-2 tiny with a 501-token vocabulary split over tp=2 on 2 ranks (a
// packed q/k/v weight and bias split by columns, column- and row-parallel
// linears, uneven vocabulary rows; gains and biases randomized so that a
// misplaced element shows). Each rank cuts each of its slices into two
// pieces at several points (an element, part of a row, past whole rows)
// and writes them as slices: both ranks' files together give exactly each
// whole tensor, and any range of a slice reads back as its elements.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/dist/collectives.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace accel;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

TEST(TensorParallelPieceSlices, PiecesOfSlicesPlaceEveryElementOfTheWhole) {
  const accel::testing::TempDir dir("tp_piece_slices");
  run_distributed(2, [&] {
    ParallelismConfig config;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    seed_cpu(3);
    gpt2::GPT2 model(gpt2::named_config("tiny").vocab_size(501));
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
    }
    gpt2::parallelize_tensor(model, mesh.group("tp"));
    const int rank = mesh.coordinate("tp");
    for (const auto& item : model->named_parameters()) {
      const auto& name = item.key();
      const auto& p = item.value();
      if (!is_tensor_parallel_slice(p)) continue;
      const auto whole = full_tensor_parallel_parameter(p);
      const auto flat = p.detach().reshape({-1});
      const int64_t n = flat.numel(), row = p.size(-1);
      // Cut points: one element in, inside the second row, whole rows, the last element.
      // (Each rank's own: under the uneven vocabulary the slices differ in size.)
      const std::vector<int64_t> cuts{1, row + 3, 2 * row, n / 3, n - 1};
      for (size_t c = 0; c < cuts.size(); ++c) {
        const int64_t cut = std::min(cuts[c], n - 1);  // a bias is one row
        std::vector<Slice> slices;
        append_piece_slices(slices, "a", name, flat.narrow(0, 0, cut), p, 0, p.scalar_type(), true);
        append_piece_slices(slices, "b", name, flat.narrow(0, cut, n - cut), p, cut, p.scalar_type(), true);
        const auto file = dir / (name + "_" + std::to_string(c) + "_" + std::to_string(rank) + ".safetensors");
        save_slices(slices, file, 2);
        wait_for_everyone(mesh.group("tp"));
        const SliceSet set({dir / (name + "_" + std::to_string(c) + "_0.safetensors"),
                            dir / (name + "_" + std::to_string(c) + "_1.safetensors")});
        EXPECT_TRUE(set.read_whole(name).equal(whole)) << name << " cut at " << cut;
        for (const int64_t begin : {int64_t{0}, cut - 1, cut, n / 2})
          for (const int64_t len : {int64_t{1}, row + 1, n - begin})
            if (begin >= 0 && begin + len <= n)
              EXPECT_TRUE(read_piece(set, name, p, begin, len, p.scalar_type()).equal(flat.narrow(0, begin, len)))
                  << name << " elements [" << begin << ", " << begin + len << ") of tp rank " << rank << "'s slice";
        wait_for_everyone(mesh.group("tp"));  // both read before the next cut's files
      }
    }
  });
}
