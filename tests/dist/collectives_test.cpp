// Collectives with 2 and 3 processes over Gloo on loopback; each rank
// checks its results against values computed locally from the rank numbers.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "accel/dist/collectives.h"
#include "accel/dist/logging.h"
#include "accel/state.h"
#include "support/distributed.h"
#include "support/files.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::read_file;
using accel::testing::run_distributed;
using accel::testing::TempDir;

class Collectives : public ::testing::TestWithParam<int> {};

TEST_P(Collectives, TopologyFromLauncher) {
  const int n = GetParam();
  run_distributed(n, [n] {
    auto& st = state();
    EXPECT_EQ(st.world_size(), n);
    EXPECT_EQ(st.local_world_size(), n);
    EXPECT_EQ(st.rank(), st.local_rank());
    EXPECT_EQ(st.device(), torch::Device(torch::kCPU));
    EXPECT_EQ(st.backend(), Backend::gloo);
    EXPECT_TRUE(st.process_group());
  });
}

TEST_P(Collectives, GatherReduceBroadcast) {
  const int n = GetParam();
  run_distributed(n, [n] {
    const int r = state().rank();
    auto mine = torch::full({2, 3}, static_cast<float>(r));
    auto g = gather(mine);
    ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2 * n, 3}));
    for (int k = 0; k < n; ++k) EXPECT_TRUE(g.narrow(0, 2 * k, 2).eq(k).all().item<bool>());
    // 0-d tensors gather as [1] each.
    EXPECT_EQ(gather(torch::tensor(static_cast<double>(r))).sizes(), (std::vector<int64_t>{n}));

    const float sum = n * (n - 1) / 2.0f;
    EXPECT_FLOAT_EQ(reduce(torch::tensor({static_cast<float>(r)}), ReduceOp::sum).item<float>(), sum);
    EXPECT_FLOAT_EQ(reduce(torch::tensor({static_cast<float>(r)}), ReduceOp::mean).item<float>(), sum / n);
    EXPECT_FLOAT_EQ(reduce(torch::tensor({static_cast<float>(r)}), ReduceOp::max).item<float>(), n - 1);
    auto bf = torch::full({4}, static_cast<float>(r + 1)).to(torch::kBFloat16);
    all_reduce_(bf, ReduceOp::sum);
    EXPECT_FLOAT_EQ(bf[0].item<float>(), n * (n + 1) / 2.0f);

    auto b = torch::full({3}, static_cast<float>(r) * 10);
    broadcast(b, n - 1);
    EXPECT_TRUE(b.eq(10.0f * (n - 1)).all().item<bool>());
    // Non-contiguous input is broadcast into place as well.
    auto nc = torch::full({3, 2}, static_cast<float>(r)).t();
    broadcast(nc, 0);
    EXPECT_TRUE(nc.eq(0).all().item<bool>());
  });
}

TEST_P(Collectives, PadAcrossProcessesUnevenShapes) {
  const int n = GetParam();
  run_distributed(n, [n] {
    const int r = state().rank();
    auto t = torch::ones({r + 1, 2});
    auto p = pad_across_processes(t, 0, -1);
    ASSERT_EQ(p.sizes(), (std::vector<int64_t>{n, 2}));
    EXPECT_TRUE(p.narrow(0, 0, r + 1).eq(1).all().item<bool>());
    if (r + 1 < n) {
      EXPECT_TRUE(p.narrow(0, r + 1, n - r - 1).eq(-1).all().item<bool>());
    }
    auto first = pad_across_processes(t, 0, 7, /*pad_first=*/true);
    EXPECT_TRUE(first.narrow(0, n - r - 1, r + 1).eq(1).all().item<bool>());
    // The padded tensors can now be gathered.
    EXPECT_EQ(gather(p).size(0), n * n);
    // Padding another dim, and a dim the tensor lacks (returned as is).
    auto cols = pad_across_processes(torch::zeros({2, r + 2}), 1);
    EXPECT_EQ(cols.size(1), n + 1);
    EXPECT_EQ(pad_across_processes(torch::zeros({2}), 3).sizes(), (std::vector<int64_t>{2}));
  });
}

TEST_P(Collectives, ObjectsOfDifferentSizes) {
  const int n = GetParam();
  run_distributed(n, [n] {
    const int r = state().rank();
    std::string mine(static_cast<size_t>(r * 1000), static_cast<char>('a' + r));
    auto all = gather_object(mine);
    ASSERT_EQ(static_cast<int>(all.size()), n);
    for (int k = 0; k < n; ++k)
      EXPECT_EQ(all[k], std::string(static_cast<size_t>(k * 1000), static_cast<char>('a' + k)));
    std::string json = r == 1 ? R"({"lr": 0.1, "name": "rank one"})" : "";
    EXPECT_EQ(broadcast_object(json, 1), R"({"lr": 0.1, "name": "rank one"})");
    // Binary bytes survive, zeros included.
    std::string bin = std::string("\0\1\2", 3) + std::to_string(r);
    EXPECT_EQ(gather_object(bin)[0], std::string("\0\1\2", 3) + "0");
  });
}

TEST_P(Collectives, SplitBetweenProcessesAsAccelerate) {
  const int n = GetParam();
  run_distributed(n, [n] {
    const int r = state().rank();
    std::vector<int> items{0, 1, 2, 3, 4, 5, 6};  // 7 items
    auto mine = split_between_processes(items);
    // Accelerate: the first 7 % n ranks get one extra.
    const int per = 7 / n, extra = 7 % n;
    const int begin = r * per + std::min(r, extra);
    const int count = per + (r < extra ? 1 : 0);
    ASSERT_EQ(static_cast<int>(mine.size()), count);
    for (int i = 0; i < count; ++i) EXPECT_EQ(mine[i], begin + i);
    auto padded = split_between_processes(items, /*apply_padding=*/true);
    EXPECT_EQ(static_cast<int>(padded.size()), per + (extra > 0));
    EXPECT_EQ(padded.back(), begin + count - 1);
    // Fewer items than ranks: the rest get the last item.
    auto few = split_between_processes(std::vector<int>{42});
    ASSERT_EQ(few.size(), 1u);
    EXPECT_EQ(few[0], 42);
    auto rows = split_between_processes(torch::arange(7).reshape({7, 1}), true);
    EXPECT_EQ(rows.size(0), per + (extra > 0));
    EXPECT_EQ(rows[0].item<int64_t>(), begin);
    // gathered padded rows: n * (per + 1) rows
    EXPECT_EQ(gather(rows).size(0), n * (per + (extra > 0)));
  });
}

TEST_P(Collectives, MainProcessFirstOrdersWork) {
  const int n = GetParam();
  run_distributed(n, [n] {
    auto& st = state();
    // The main process writes a value into the store; the others must see it
    // when their turn comes.
    main_process_first([&] {
      if (st.is_main_process()) {
        st.store()->set("test/main_first", std::vector<uint8_t>{42});
      } else {
        EXPECT_TRUE(st.store()->check({"test/main_first"}));
      }
    });
    int ran = 0;
    on_main_process([&] { ++ran; });
    EXPECT_EQ(ran, st.is_main_process() ? 1 : 0);
    wait_for_everyone();
  });
}

TEST_P(Collectives, InOrderLoggingFollowsRanks) {
  const int n = GetParam();
  const TempDir dir("collectives");
  const auto path = dir / "in_order.log";
  run_distributed(n, [&] {
    // Every rank appends to one file in its turn; the file shows rank order.
    std::ofstream out(path, std::ios::app);
    Logger log("test", &out);
    log.info("hello", {.main_process_only = false, .in_order = true});
    log.info("main only");
  });
  std::istringstream in(read_file(path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(static_cast<int>(lines.size()), n + 1);
  for (int r = 0; r < n; ++r) EXPECT_EQ(lines[r], "[rank " + std::to_string(r) + "] INFO test: hello");
  EXPECT_EQ(lines[n], "[rank 0] INFO test: main only");
}

INSTANTIATE_TEST_SUITE_P(Ranks, Collectives, ::testing::Values(2, 3));
