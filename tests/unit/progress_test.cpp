// ProgressBar: the line it draws, and when it draws it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include "accel/accelerator.h"
#include "accel/tracking/progress.h"
#include "support/errors.h"
#include "support/files.h"

namespace {

using accel::testing::contents;

using accel::format_progress;
using accel::ProgressBar;
using accel::ProgressOptions;

// Columns on a terminal: UTF-8 continuation bytes take none (the bar's blocks are 3 bytes).
int columns(const std::string& text) {
  int n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

TEST(ProgressFormat, CountsRateEtaAndBar) {
  // 42 of 100 after 10 s: 4.20 it/s, 58 left take 13.8 s.
  const auto line = format_progress("train", 42, 100, 10.0, "it", "loss=0.125", 80);
  EXPECT_EQ(line.rfind("train  42%|", 0), 0u) << line;
  EXPECT_NE(line.find("| 42/100 [00:10<00:13, 4.20it/s, loss=0.125]"), std::string::npos) << line;
  EXPECT_EQ(columns(line), 80) << line;  // the bar takes what the text leaves
  // Full and empty bars; a slow loop in seconds per unit; no total: no bar.
  const auto done = format_progress("", 5, 5, 3700.0, "step", "", 60);
  EXPECT_NE(done.find("100%|"), std::string::npos) << done;
  EXPECT_NE(done.find("5/5 [1:01:40<00:00, 740.00s/step]"), std::string::npos) << done;
  EXPECT_NE(format_progress("", 0, 10, 0.0, "it", "", 60).find("0/10 [00:00<?, ?it/s]"), std::string::npos);
  EXPECT_EQ(format_progress("load", 3, 0, 2.0, "B", "", 60), "load 3 B [00:02, 1.50B/s]");
}

TEST(ProgressBar, NotATerminalWritesALinePerIntervalAndOneAtTheEnd) {
  std::FILE* out = std::tmpfile();
  {
    ProgressBar bar(10, ProgressOptions().desc("steps").out(out).enabled(true).line_interval(3600));
    for (int i = 0; i < 10; ++i) bar.update();
    EXPECT_EQ(bar.count(), 10);
  }
  const std::string text = contents(out);
  // The first update draws (the job's start shows in the log), then nothing
  // until the interval passes, then the final line when the bar closes.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_NE(text.find("steps  10%|"), std::string::npos) << text;
  EXPECT_NE(text.find("steps 100%|"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no terminal redraws in a log
  std::fclose(out);
}

TEST(ProgressBar, OffByOptionEnvironmentOrOnOtherProcesses) {
  std::FILE* out = std::tmpfile();
  {
    ProgressBar bar(3, ProgressOptions().out(out).enabled(false));
    bar.update(3);
    EXPECT_EQ(bar.count(), 3);  // still counts
  }
  EXPECT_EQ(contents(out), "");
  std::fclose(out);
  EXPECT_TRUE(accel::progress_bars_disabled_by_environment(accel::env_from_map({{"TQDM_DISABLE", "1"}})));
  EXPECT_TRUE(
      accel::progress_bars_disabled_by_environment(accel::env_from_map({{"ACCEL_DISABLE_PROGRESS_BARS", "true"}})));
  EXPECT_FALSE(accel::progress_bars_disabled_by_environment(accel::env_from_map({{"TQDM_DISABLE", "0"}})));
  accel::testing::expect_error<std::invalid_argument>(
      [] {
        accel::progress_bars_disabled_by_environment(accel::env_from_map({{"TQDM_DISABLE", "sometimes"}}));
      },
      {"TQDM_DISABLE", "sometimes"});
}

TEST(ProgressBar, TheAcceleratorShowsLoggedLosses) {
  std::FILE* out = std::tmpfile();
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true));
  {
    auto bar = acc.progress_bar(4, ProgressOptions().out(out).enabled(true).line_interval(3600));
    bar.update();
    acc.log({{"train_loss", 0.123456}, {"lr", 0.001}});
    bar.update(3);
  }
  const std::string text = contents(out);
  EXPECT_NE(text.find("4/4"), std::string::npos) << text;
  EXPECT_NE(text.find("train_loss=0.1235]"), std::string::npos) << text;  // the loss, not the lr
  std::fclose(out);
}

}  // namespace
