// Pipeline schedules as action lists, against the orders GPipe and 1F1B
// (Megatron-LM's non-interleaved schedule) prescribe, and run through a
// simulated pipeline (a forward waits for the previous stage's forward of
// the same micro-batch, a backward for the next stage's backward): every
// stage finishes, and 1F1B keeps at most num_stages - stage micro-batches
// in flight. Also the cut of a model into stages between its units.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/parallel/pipeline/schedule.h"
#include "accel/parallel/pipeline/stage_cut.h"
#include "support/unit_stack.h"

using namespace accel;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return {};
}

// Runs every stage's list in lock step as far as their dependencies allow;
// returns the largest number of micro-batches each stage held at once, or
// fails when the stages stop with actions left (a deadlock).
std::vector<int64_t> simulate(PipelineScheduleKind kind, int stages, int64_t micro) {
  std::vector<std::vector<PipelineAction>> lists;
  for (int s = 0; s < stages; ++s) lists.push_back(pipeline_schedule(kind, s, stages, micro));
  std::vector<size_t> next(stages, 0);
  std::vector<std::vector<bool>> fwd(stages, std::vector<bool>(micro)), bwd(stages, std::vector<bool>(micro));
  std::vector<int64_t> held(stages, 0), peak(stages, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < stages; ++s) {
      if (next[s] == lists[s].size()) continue;
      const auto a = lists[s][next[s]];
      const auto m = static_cast<size_t>(a.microbatch);
      if (a.kind == PipelineAction::Kind::forward) {
        if (s > 0 && !fwd[s - 1][m]) continue;
        fwd[s][m] = true;
        peak[s] = std::max(peak[s], ++held[s]);
      } else {
        if (s < stages - 1 && !bwd[s + 1][m]) continue;
        bwd[s][m] = true;
        --held[s];
      }
      ++next[s];
      progress = true;
    }
  }
  for (int s = 0; s < stages; ++s)
    EXPECT_EQ(next[s], lists[s].size()) << to_string(kind) << " stage " << s << " of " << stages << ", " << micro
                                        << " micro-batches stops at action " << next[s] << ": " << to_string(lists[s]);
  return peak;
}

}  // namespace

TEST(PipelineSchedule, GPipeRunsEveryForwardThenEveryBackward) {
  EXPECT_EQ(to_string(gpipe_schedule(0, 2, 4)), "F0 F1 F2 F3 B0 B1 B2 B3");
  EXPECT_EQ(to_string(gpipe_schedule(1, 2, 4)), "F0 F1 F2 F3 B0 B1 B2 B3");
}

TEST(PipelineSchedule, OneFOneBWarmsUpAlternatesAndCoolsDown) {
  // Stage s of p: p - s - 1 warm-up forwards, then F/B pairs, then backwards.
  EXPECT_EQ(to_string(one_f_one_b_schedule(0, 2, 4)), "F0 F1 B0 F2 B1 F3 B2 B3");
  EXPECT_EQ(to_string(one_f_one_b_schedule(1, 2, 4)), "F0 B0 F1 B1 F2 B2 F3 B3");
  EXPECT_EQ(to_string(one_f_one_b_schedule(0, 4, 8)), "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7");
  EXPECT_EQ(to_string(one_f_one_b_schedule(2, 4, 8)), "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7");
  // Fewer micro-batches than stages: the warm-up is all of them.
  EXPECT_EQ(to_string(one_f_one_b_schedule(0, 4, 2)), "F0 F1 B0 B1");
}

TEST(PipelineSchedule, EveryScheduleFinishesAndOneFOneBBoundsWhatAStageHolds) {
  for (int stages : {1, 2, 3, 4, 5})
    for (int64_t micro : {1, 2, 3, 4, 8}) {
      const auto gpipe = simulate(PipelineScheduleKind::gpipe, stages, micro);
      const auto ofob = simulate(PipelineScheduleKind::one_f_one_b, stages, micro);
      for (int s = 0; s < stages; ++s) {
        EXPECT_EQ(gpipe[s], micro) << "GPipe stage " << s;
        EXPECT_EQ(ofob[s], std::min<int64_t>(stages - s, micro)) << "1F1B stage " << s << " of " << stages;
      }
    }
}

TEST(PipelineSchedule, NamesAndBadArguments) {
  EXPECT_EQ(pipeline_schedule_kind("1F1B"), PipelineScheduleKind::one_f_one_b);
  EXPECT_EQ(pipeline_schedule_kind("gpipe"), PipelineScheduleKind::gpipe);
  EXPECT_NE(message_of([] { pipeline_schedule_kind("interleaved"); }).find("'interleaved': expected GPipe or 1F1B"),
            std::string::npos);
  EXPECT_NE(message_of([] { one_f_one_b_schedule(2, 2, 4); }).find("stage 2 is not in [0, 2)"), std::string::npos);
  EXPECT_NE(message_of([] { gpipe_schedule(0, 2, 0); }).find("0 micro-batches, expected at least 1"),
            std::string::npos);
}

TEST(PipelineCut, EvenCutGivesTheFirstStagesTheRemainder) {
  EXPECT_EQ(even_stage_cut(5, 2), (std::vector<UnitSpan>{{0, 3}, {3, 5}}));
  EXPECT_EQ(even_stage_cut(12, 4), (std::vector<UnitSpan>{{0, 3}, {3, 6}, {6, 9}, {9, 12}}));
  EXPECT_NE(message_of([] {
              even_stage_cut(2, 3);
            }).find("3 stages for a model of 2 units; each stage needs at least one unit, so at most 2 stages"),
            std::string::npos);
}

TEST(PipelineCut, SplitPointsMustBeUnitBoundaries) {
  using namespace accel::testing::unit_stack;
  StackOptions o;
  o.blocks = 4;
  Stack model(o);
  EXPECT_EQ(pipeline_units(*model).size(), 4u);
  EXPECT_EQ(cut_stages(*model, 2), (std::vector<UnitSpan>{{0, 2}, {2, 4}}));
  EXPECT_EQ(cut_stages(*model, 3, {"h.1", "h.3"}), (std::vector<UnitSpan>{{0, 1}, {1, 3}, {3, 4}}));
  EXPECT_NE(message_of([&] {
              cut_stages(*model, 2, {"h.2.fc1"});
            }).find("split point 'h.2.fc1' is inside unit 'h.2' (StackBlock) and would split it"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              cut_stages(*model, 2, {"head"});
            }).find("'head' is not a unit of the model; its units are: h.0, h.1, h.2, h.3"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              cut_stages(*model, 3, {"h.2", "h.1"});
            }).find("leaves the stage before it no unit"),
            std::string::npos);
  EXPECT_NE(message_of([&] { cut_stages(*model, 3, {"h.2"}); }).find("1 split points for 3 stages, expected 2"),
            std::string::npos);
  o.units = false;
  Stack plain(o);
  EXPECT_NE(message_of([&] { cut_stages(*plain, 2); }).find("the model has no units"), std::string::npos);
}
