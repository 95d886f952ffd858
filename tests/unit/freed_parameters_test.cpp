// A sharded model's parameters read outside their unit's forward and
// backward (their storage freed): the process stops with a message naming
// the unit and how to read a sharded model, instead of a bare segmentation
// fault; a fault anywhere else still ends the process as before. One
// process under full_shard (no process group needed).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <iostream>

#include "accel/accelerator.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing::unit_stack;

namespace {

void read_a_freed_parameter(bool root) {
  Accelerator acc(AcceleratorOptions().sharding(ShardingOptions().strategy(ShardingStrategy::full_shard)));
  Stack net;
  auto model = acc.prepare(net);
  // Through the model, the values are there: a forward gathers them. (It
  // keeps the root gathered until backward, as FSDP does: so the root is
  // read before any forward.)
  if (!root) std::cerr << "forward gives " << model(torch::ones({2, 6})).sum().item<float>() << "\n";
  const auto& p = root ? net->head->weight : net->blocks[1]->fc1->weight;
  std::cerr << p.sum().item<float>() << "\n";  // outside forward: freed
}

}  // namespace

TEST(FreedParametersDeathTest, ReadingOneNamesItsUnitAndHowToRead) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(read_a_freed_parameter(false), ::testing::KilledBySignal(SIGSEGV),
              "forward gives.*parameters of sharded unit 'h\\.1' while they were freed.*get_state_dict");
  EXPECT_EXIT(read_a_freed_parameter(true), ::testing::KilledBySignal(SIGSEGV), "the root unit");
}

TEST(FreedParametersDeathTest, OtherFaultsEndTheProcessAsBefore) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Accelerator acc(AcceleratorOptions().sharding(ShardingOptions().strategy(ShardingStrategy::full_shard)));
        Stack net;
        auto model = acc.prepare(net);  // the handler is installed
        std::cerr << "prepared\n";
        volatile int* nowhere = nullptr;
        std::cerr << *nowhere << "\n";
      },
      ::testing::KilledBySignal(SIGSEGV), "prepared\n$");
}
