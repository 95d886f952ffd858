// The byte bar of large checkpoint saves and loads: shown once the bytes
// reach the threshold, with the totals the files hold, off by the
// environment; and the byte units of ProgressBar's line.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "accel/accelerator.h"
#include "accel/checkpoint/model_files.h"
#include "accel/tracking/transfer_progress.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::contents;

namespace fs = std::filesystem;
using accel::ProgressOptions;
using accel::TransferProgressOptions;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// 3 MiB of float parameters and 64 KiB of buffer, written as 3 shards.
struct BigImpl : torch::nn::Module {
  BigImpl() {
    a = register_parameter("a", torch::randn({512, 512}));
    b = register_parameter("b", torch::randn({1024, 512}));
    c = register_buffer("c", torch::arange(16384, torch::kFloat32));
  }
  torch::Tensor forward(torch::Tensor x) { return x; }
  torch::Tensor a, b, c;
};
TORCH_MODULE(Big);
constexpr int64_t kBytes = (512 * 512 + 1024 * 512 + 16384) * 4;

TransferProgressOptions small_threshold(std::FILE* out) {
  // A line at the start and at the end only (no periodic ones in between).
  return TransferProgressOptions().min_bytes(1 << 20).bar(ProgressOptions().out(out).enabled(true).line_interval(3600));
}

TEST(TransferProgress, ByteUnitsInTheLine) {
  EXPECT_EQ(accel::format_progress("load", 1536, 0, 1.0, "B", "", 80, true), "load 1.50KiB [00:01, 1.50KiB/s]");
  const auto line = accel::format_progress("save", 3 << 29, int64_t{3} << 30, 2.0, "B", "", 100, true);
  EXPECT_NE(line.find("save  50%|"), std::string::npos) << line;
  EXPECT_NE(line.find("| 1.50GiB/3.00GiB [00:02<00:02, 768.00MiB/s]"), std::string::npos) << line;
}

TEST(TransferProgress, SaveAndLoadModelShowStartAndEndWithTheFilesTotals) {
  accel::testing::TempDir dir("transfer_progress");
  Big model;
  std::FILE* out = std::tmpfile();
  const auto saved = accel::save_model(
      *model, dir / "m", accel::SaveModelOptions().max_shard_size(int64_t{1} << 20).progress(small_threshold(out)));
  ASSERT_EQ(saved.files.size(), 3u);
  ASSERT_EQ(saved.total_size, kBytes);
  auto text = lines(contents(out));
  // kBytes = 3,211,264 B = 3.06 MiB
  ASSERT_EQ(text.size(), 2u) << contents(out);
  EXPECT_EQ(text[0].rfind("save_model   0%|", 0), 0u) << text[0];
  EXPECT_NE(text[0].find("| 0B/3.06MiB ["), std::string::npos) << text[0];
  EXPECT_EQ(text[1].rfind("save_model 100%|", 0), 0u) << text[1];
  EXPECT_NE(text[1].find("| 3.06MiB/3.06MiB ["), std::string::npos) << text[1];
  std::fclose(out);

  // Loading reads the same bytes back into a fresh model.
  Big fresh;
  out = std::tmpfile();
  accel::load_model_weights(*fresh, dir / "m", accel::LoadModelOptions().progress(small_threshold(out)));
  EXPECT_TRUE(torch::equal(fresh->b, model->b));
  text = lines(contents(out));
  ASSERT_EQ(text.size(), 2u) << contents(out);
  EXPECT_NE(text[0].find("load_model   0%|"), std::string::npos) << text[0];
  EXPECT_NE(text[1].find("load_model 100%|"), std::string::npos) << text[1];
  EXPECT_NE(text[1].find("| 3.06MiB/3.06MiB ["), std::string::npos) << text[1];
  std::fclose(out);

  // Under the threshold: nothing at all.
  out = std::tmpfile();
  accel::save_model(*model, dir / "small",
                    accel::SaveModelOptions().progress(small_threshold(out).min_bytes(kBytes + 1)));
  EXPECT_EQ(contents(out), "");
  std::fclose(out);
}

TEST(TransferProgress, SaveStateAndLoadStateCountEveryFileOnce) {
  accel::testing::TempDir dir("transfer_progress_state");
  std::FILE* out = std::tmpfile();
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).checkpoint_progress(small_threshold(out)));
  Big net;
  auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  auto [model, opt] = acc.prepare(net, optimizer);
  (void)model;
  // One step so that the momentum buffers exist: the optimizer file holds
  // as many bytes as the parameters.
  for (auto& p : net->parameters()) p.mutable_grad() = torch::ones_like(p);
  opt->step();
  acc.save_state(dir / "ckpt");
  // The bytes of every .safetensors file's tensors: what the bar counted.
  int64_t expected = 0;
  for (const auto& entry : fs::directory_iterator(dir / "ckpt"))
    if (entry.path().extension() == ".safetensors")
      expected += static_cast<int64_t>(accel::safetensors::File(entry.path()).header().data_size());
  const int64_t params = (512 * 512 + 1024 * 512) * 4;
  ASSERT_GE(expected, kBytes + params);  // model, momentum, random states
  auto text = lines(contents(out));
  ASSERT_GE(text.size(), 2u) << contents(out);
  EXPECT_EQ(text.front().rfind("save_state", 0), 0u) << text.front();
  const std::string total = accel::format_progress("", expected, expected, 1, "B", "", 200, true);
  const std::string whole = total.substr(total.find("| ") + 2, total.find(" [") - total.find("| ") - 2);
  EXPECT_NE(text.back().find("save_state 100%|"), std::string::npos) << text.back();
  EXPECT_NE(text.back().find("| " + whole + " ["), std::string::npos) << text.back() << " vs " << whole;
  std::fclose(out);

  // Off by the environment variable, whatever the threshold.
  {
    accel::testing::ScopedEnv off("ACCEL_DISABLE_PROGRESS_BARS", "1");
    std::FILE* quiet = std::tmpfile();
    accel::Accelerator acc2(accel::AcceleratorOptions().cpu(true).checkpoint_progress(
        TransferProgressOptions().min_bytes(1).bar(ProgressOptions().out(quiet))));
    Big net2;
    auto model2 = acc2.prepare(net2);
    (void)model2;
    acc2.save_state(dir / "ckpt2");
    acc2.load_state(dir / "ckpt2");
    EXPECT_EQ(contents(quiet), "");
    std::fclose(quiet);
  }
}

TEST(TransferProgress, ANegativeThresholdIsNamed) {
  accel::testing::expect_error<std::invalid_argument>(
      [] { accel::TransferProgress("save", TransferProgressOptions().min_bytes(-1)); }, {"min_bytes", "-1"});
}

}  // namespace
