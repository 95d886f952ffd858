// accel::Unit and the wrap policies that pick which units shard: a unit
// without hooks is the block itself; hooks run around its forward; the
// class names a unit answers to; which parameters each planned unit holds,
// and the refusals (an unknown class name, a weight tied across units).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "accel/parallel/fsdp/wrap_policy.h"
#include "accel/unit/unit.h"
#include "support/errors.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing::unit_stack;

namespace {

std::vector<std::string> names_of(const fsdp::PlannedUnit& unit) {
  std::vector<std::string> names;
  for (const auto& [name, p] : unit.params) names.push_back(name);
  return names;
}

class CountingHooks : public UnitHooks {
 public:
  void pre_forward(const std::vector<torch::Tensor>& inputs) override {
    ++pre;
    inputs_seen = inputs.size();
  }
  void post_forward(std::vector<torch::Tensor>& outputs) override {
    ++post;
    outputs_seen = outputs.size();
  }
  int pre = 0, post = 0;
  size_t inputs_seen = 0, outputs_seen = 0;
};

}  // namespace

TEST(Unit, WithoutHooksIsTheBlockAndHooksRunAroundIt) {
  torch::manual_seed(0);
  Stack with_units;
  auto x = torch::randn({4, 6});
  auto plain =
      with_units->head(with_units->blocks[2](with_units->blocks[1](with_units->blocks[0](with_units->embed(x)))));
  EXPECT_TRUE(torch::equal(with_units(x), plain));

  auto hooks = std::make_shared<CountingHooks>();
  with_units->units[1].slot()->set_hooks(hooks);
  EXPECT_TRUE(torch::equal(with_units(x), plain));
  EXPECT_EQ(hooks->pre, 1);
  EXPECT_EQ(hooks->post, 1);
  EXPECT_EQ(hooks->inputs_seen, 1u);
  EXPECT_EQ(hooks->outputs_seen, 1u);
  // One mode owns a unit at a time.
  accel::testing::expect_error<std::logic_error>(
      [&] { with_units->units[1].slot()->set_hooks(std::make_shared<CountingHooks>()); }, {"StackBlock"});
  with_units->units[1].slot()->set_hooks(nullptr);
  // A module is wrapped once; copies of the Unit share its slot.
  accel::testing::expect_error<std::logic_error>([&] { Unit<Block> again(with_units->blocks[0]); }, {"already a unit"});
  auto copy = with_units->units[0];
  EXPECT_EQ(copy.slot(), with_units->units[0].slot());
}

TEST(Unit, ClassNamesAndFindUnits) {
  Stack stack;
  const auto& slot = *stack->units[0].slot();
  EXPECT_EQ(slot.class_name(), "StackBlock");
  for (const char* name : {"StackBlock", "accel::testing::unit_stack::BlockImpl", "accel::testing::unit_stack::Block",
                           "BlockImpl", "Block"})
    EXPECT_TRUE(slot.matches(name)) << name;
  for (const char* name : {"stackblock", "Stack", "unit_stack::Block", ""}) EXPECT_FALSE(slot.matches(name)) << name;
  Unit<Block> unnamed(Block(4));
  EXPECT_EQ(unnamed.slot()->class_name(), "accel::testing::unit_stack::BlockImpl");

  const auto found = find_units(*stack);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].path, "h.0");
  EXPECT_EQ(found[2].path, "h.2");
  EXPECT_EQ(found[1].slot, stack->units[1].slot());
  Stack plain(StackOptions{.units = false});
  EXPECT_TRUE(find_units(*plain).empty());
}

TEST(WrapPolicy, TransformerBasedTakesTheNamedUnitsAndTheRootTheRest) {
  Stack stack;
  auto plan = fsdp::plan_units(*stack, ShardingOptions().transformer_cls_to_wrap({"StackBlock"}));
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].path, "h.0");
  EXPECT_EQ(names_of(plan[0]), (std::vector<std::string>{"h.0.ln.weight", "h.0.ln.bias", "h.0.fc1.weight",
                                                         "h.0.fc1.bias", "h.0.fc2.weight", "h.0.fc2.bias"}));
  EXPECT_EQ(plan[3].path, "");
  EXPECT_EQ(plan[3].slot, nullptr);
  EXPECT_EQ(names_of(plan[3]), (std::vector<std::string>{"embed.weight", "embed.bias", "head.weight", "head.bias"}));
  // An empty list takes every unit; NO_WRAP none.
  EXPECT_EQ(fsdp::plan_units(*stack, ShardingOptions()).size(), 4u);
  auto none = fsdp::plan_units(*stack, ShardingOptions().auto_wrap_policy(WrapPolicy::no_wrap));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].params.size(), stack->parameters().size());
  // A name no unit answers to lists those the model has.
  accel::testing::expect_error<std::invalid_argument>(
      [&] {
        fsdp::plan_units(*stack, ShardingOptions().transformer_cls_to_wrap({"StackBlock", "GPT2Block"}));
      },
      {"'GPT2Block'", "StackBlock"});
  Stack plain(StackOptions{.units = false});
  accel::testing::expect_error<std::invalid_argument>(
      [&] { fsdp::plan_units(*plain, ShardingOptions().transformer_cls_to_wrap({"Block"})); }, {"no units"});
}

TEST(WrapPolicy, SizeBasedCountsTheParametersAUnitHolds) {
  Stack stack(StackOptions{.width = 8});
  const int64_t block = 2 * 8 + (8 * 16 + 16) + (16 * 8 + 8);  // ln, fc1, fc2 = 296
  auto picked = [&](int64_t min) {
    return fsdp::plan_units(*stack, ShardingOptions().auto_wrap_policy(WrapPolicy::size_based).min_num_params(min))
               .size() -
           1;
  };
  EXPECT_EQ(picked(block), 3u);
  EXPECT_EQ(picked(block + 1), 0u);
}

TEST(WrapPolicy, AWeightTiedAcrossUnitsIsRefusedNamingBothPlaces) {
  Stack stack;
  // Block 2's fc2 weight, registered in the head too.
  stack->head->register_parameter("tied", stack->blocks[2]->fc2->weight);
  accel::testing::expect_error<std::invalid_argument>([&] { fsdp::plan_units(*stack, ShardingOptions()); },
                                                      {"'h.2.fc2.weight'", "'head.tied'"});
  // Tied between two places of the root: fine, held once.
  Stack tied_in_root;
  auto w = torch::randn({8, 8}, torch::requires_grad());
  tied_in_root->embed->register_parameter("extra", w);
  tied_in_root->head->register_parameter("extra", w);
  auto plan = fsdp::plan_units(*tied_in_root, ShardingOptions());
  EXPECT_EQ(plan.back().params.size(), 5u);
}
