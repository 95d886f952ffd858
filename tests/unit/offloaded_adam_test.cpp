// NVMe offload: the swap store round-trips tensors through files with
// several I/O threads and pieces, names the path and errno on errors (a
// folder that cannot be made, a missing page, a page of the wrong size),
// and removes its files; OffloadedAdam with the state paged to files
// equals OffloadedAdam with the state in host memory bit for bit over
// several steps (chunks that do not divide the slice, bf16 gradients and
// copies, amsgrad), including after a state()/load_state() round trip, and
// equals LibTorch's AdamW; it keeps only its chunk buffers in memory.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/optim/nvme_store.h"
#include "accel/optim/offloaded_adam.h"
#include "support/errors.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::expect_error;
using accel::testing::TempDir;

TEST(NvmeStore, RoundTripsInPiecesOnSeveralThreads) {
  TempDir dir("offload");
  fs::path written;
  {
    accel::NvmeStore store(accel::NvmeStoreOptions(dir / "swap").io_threads(3).block_bytes(4096));
    auto a = torch::randn({100003});
    auto b = torch::randint(0, 1000, {777}, torch::kLong);
    auto wa = store.write("exp_avg.0", a);
    auto wb = store.write("step_counts", b);
    wa.wait();
    wb.wait();
    EXPECT_TRUE(wa.done());
    EXPECT_TRUE(store.contains("exp_avg.0"));
    written = store.path_of("exp_avg.0");
    EXPECT_EQ(fs::file_size(written), 100003 * 4);
    auto ra = torch::empty({100003});
    auto rb = torch::empty({777}, torch::kLong);
    auto h1 = store.read("exp_avg.0", ra);
    auto h2 = store.read("step_counts", rb);
    h1.wait();
    h2.wait();
    EXPECT_TRUE(torch::equal(ra, a));
    EXPECT_TRUE(torch::equal(rb, b));
    // A rewrite replaces the file whole (shorter than before).
    store.write("exp_avg.0", a.narrow(0, 0, 10).contiguous()).wait();
    EXPECT_EQ(fs::file_size(written), 40);
    // O_DIRECT where allowed (aligned here; /tmp may refuse it: then the page cache).
    accel::NvmeStore direct(accel::NvmeStoreOptions(dir / "direct").direct_io(true));
    auto aligned = torch::randn({4096});  // 16 KiB; ATen aligns CPU memory to 64 bytes only
    direct.write("x", aligned).wait();
    auto back = torch::empty({4096});
    direct.read("x", back).wait();
    EXPECT_TRUE(torch::equal(back, aligned));
  }
  EXPECT_FALSE(fs::exists(written)) << "swap files are removed with the store";
}

TEST(NvmeStore, ErrorsNameThePathAndTheCause) {
  TempDir dir("offload");
  // A folder that cannot be made (its parent is a file): fails even as root.
  std::ofstream(dir / "file") << "x";
  expect_error([&] { accel::NvmeStore store(accel::NvmeStoreOptions(dir / "file" / "swap")); },
               {(dir / "file" / "swap").string(), "cannot make the folder"});
  accel::NvmeStore store(accel::NvmeStoreOptions(dir / "swap"));
  auto t = torch::zeros({8});
  expect_error([&] { store.read("never_written", t); },
               {(dir / "swap" / "never_written.swp").string(), "No such file or directory", "errno 2"});
  store.write("k", torch::zeros({4})).wait();
  expect_error([&] { store.read("k", t); }, {"k.swp has 16 bytes, expected 32"});
  expect_error([&] { store.write("../escape", t); }, {"key '../escape'"});
  expect_error([&] { store.write("k", torch::zeros({4, 4}).t()); }, {"contiguous CPU tensor"});
  expect_error([&] { accel::NvmeStore s(accel::NvmeStoreOptions(dir.path()).io_threads(0)); }, {"io_threads = 0"});
}

struct Run {
  std::vector<torch::Tensor> params;  // after each step
  std::vector<torch::Tensor> copies;
  std::map<std::string, torch::Tensor> state;
};

// Steps one slice `steps` times with reproducible gradients; with
// `reload_at`, the optimizer is rebuilt from state() after that step.
Run train(int64_t numel, const accel::CpuAdamOptions& adam, const accel::OffloadedAdamOptions& options, int steps,
          bool bf16, int reload_at = -1) {
  auto g = at::detail::createCPUGenerator(21);
  auto param = torch::randn({numel}, g);
  auto copy = torch::empty({numel}, torch::kBFloat16);
  auto opt = std::make_unique<accel::OffloadedAdam>(numel, adam, options);
  Run run;
  for (int s = 0; s < steps; ++s) {
    auto grad = torch::randn({numel}, g);
    if (bf16) grad = grad.to(torch::kBFloat16);
    opt->step(param, grad, bf16 ? copy : torch::Tensor());
    run.params.push_back(param.clone());
    if (bf16) run.copies.push_back(copy.clone());
    if (s == reload_at) {
      auto state = opt->state();
      const int64_t count = opt->step_count();
      opt.reset();  // the swap files go with it
      opt = std::make_unique<accel::OffloadedAdam>(numel, adam, options);
      opt->load_state(state, count);
    }
  }
  run.state = opt->state();
  return run;
}

void expect_identical(const Run& a, const Run& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t s = 0; s < a.params.size(); ++s) EXPECT_TRUE(torch::equal(a.params[s], b.params[s])) << "step " << s;
  for (size_t s = 0; s < a.copies.size(); ++s) EXPECT_TRUE(torch::equal(a.copies[s], b.copies[s])) << "copy " << s;
  ASSERT_EQ(a.state.size(), b.state.size());
  for (const auto& [k, v] : a.state) EXPECT_TRUE(torch::equal(v, b.state.at(k))) << k;
}

TEST(OffloadedAdam, NvmeEqualsCpuBitForBit) {
  TempDir dir("offload");
  const int64_t n = 10007;  // 11 chunks of 1000 (the last one short): more chunks than buffers
  for (bool bf16 : {false, true}) {
    for (bool amsgrad : {false, true}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp32") + (amsgrad ? " amsgrad" : ""));
      auto adam = accel::CpuAdamOptions(1e-2).weight_decay(0.01).amsgrad(amsgrad);
      auto cpu = train(n, adam, accel::OffloadedAdamOptions().device(accel::OffloadDevice::cpu), 6, bf16);
      auto nvme = train(n, adam,
                        accel::OffloadedAdamOptions()
                            .device(accel::OffloadDevice::nvme)
                            .nvme_path(dir / "swap")
                            .chunk_elements(1000)
                            .io_threads(2),
                        6, bf16);
      expect_identical(nvme, cpu);
      // Rebuilt from its state half way: the same run.
      auto reloaded = train(n, adam,
                            accel::OffloadedAdamOptions()
                                .device(accel::OffloadDevice::nvme)
                                .nvme_path(dir / "swap2")
                                .chunk_elements(1000),
                            6, bf16, /*reload_at=*/2);
      expect_identical(reloaded, cpu);
    }
  }
  EXPECT_TRUE(fs::is_empty(dir / "swap")) << "swap files are removed with the optimizer";
}

TEST(OffloadedAdam, CpuOffloadEqualsLibTorchsAdamW) {
  const int64_t n = 4099;
  auto g = at::detail::createCPUGenerator(5);
  auto p = torch::randn({n}, g);
  auto ref = p.clone().requires_grad_();
  torch::optim::AdamW torch_opt({ref}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  accel::OffloadedAdam opt(n, accel::CpuAdamOptions::from(torch::optim::AdamWOptions(1e-2).weight_decay(0.1)));
  for (int s = 0; s < 5; ++s) {
    auto grad = torch::randn({n}, g);
    ref.mutable_grad() = grad.clone();
    torch_opt.step();
    opt.step(p, grad);
  }
  EXPECT_LT((p - ref.detach()).abs().max().item<double>(), 2e-6);
  EXPECT_EQ(opt.step_count(), 5);
}

TEST(OffloadedAdam, ChunkCallbackSeesEveryRangeInOrderAndChangesNothing) {
  // Whether stepped whole or chunk by chunk with a callback, cpu or nvme:
  // the same bits; the callback sees [0, n) cut in chunk_elements, in order,
  // each after its values were written.
  TempDir dir("offload");
  const int64_t n = 2500;
  auto adam = accel::CpuAdamOptions(1e-2);
  for (auto device : {accel::OffloadDevice::cpu, accel::OffloadDevice::nvme}) {
    SCOPED_TRACE(accel::to_string(device));
    auto options = accel::OffloadedAdamOptions().device(device).nvme_path(dir / "swap").chunk_elements(1000);
    auto g = at::detail::createCPUGenerator(3);
    auto p_whole = torch::randn({n}, g), grad = torch::randn({n}, g);
    auto p_chunked = p_whole.clone();
    auto copy = torch::empty({n}, torch::kBFloat16);
    accel::OffloadedAdam whole(n, adam, options), chunked(n, adam, options.nvme_path(dir / "swap2"));
    whole.step(p_whole, grad);
    std::vector<std::pair<int64_t, int64_t>> seen;
    chunked.step(p_chunked, grad, copy, [&](int64_t b, int64_t e) {
      seen.emplace_back(b, e);
      EXPECT_TRUE(torch::equal(copy.narrow(0, b, e - b), p_chunked.narrow(0, b, e - b).to(torch::kBFloat16)));
    });
    EXPECT_TRUE(torch::equal(p_whole, p_chunked));
    EXPECT_EQ(seen, (std::vector<std::pair<int64_t, int64_t>>{{0, 1000}, {1000, 2000}, {2000, 2500}}));
    EXPECT_EQ(chunked.step_count(), 1);
  }
}

TEST(OffloadedAdam, NvmeKeepsOnlyChunkBuffersInMemory) {
  TempDir dir("offload");
  const int64_t n = 1 << 20;
  accel::OffloadedAdam cpu(n, accel::CpuAdamOptions());
  accel::OffloadedAdam nvme(
      n, accel::CpuAdamOptions(),
      accel::OffloadedAdamOptions().device(accel::OffloadDevice::nvme).nvme_path(dir.path()).chunk_elements(1 << 16));
  EXPECT_EQ(cpu.host_state_bytes(), 2 * 4 * n);
  EXPECT_EQ(nvme.host_state_bytes(), 3 * 2 * 4 * (1 << 16));  // three buffers, two fields
  auto p = torch::zeros({n});
  nvme.step(p, torch::ones({n}));
  int64_t on_disk = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) on_disk += static_cast<int64_t>(fs::file_size(e.path()));
  EXPECT_EQ(on_disk, 2 * 4 * n);
}

TEST(OffloadedAdam, IoErrorsAreReported) {
  TempDir dir("offload");
  std::ofstream(dir / "file") << "x";
  expect_error(
      [&] {
        accel::OffloadedAdam opt(
            100, accel::CpuAdamOptions(),
            accel::OffloadedAdamOptions().device(accel::OffloadDevice::nvme).nvme_path(dir / "file" / "x"));
      },
      {(dir / "file" / "x").string()});
  expect_error(
      [] {
        accel::OffloadedAdam opt(100, accel::CpuAdamOptions(),
                                 accel::OffloadedAdamOptions().device(accel::OffloadDevice::nvme));
      },
      {"needs nvme_path"});
  // A page that vanished between steps: the next step names it.
  accel::OffloadedAdam opt(
      100, accel::CpuAdamOptions(),
      accel::OffloadedAdamOptions().device(accel::OffloadDevice::nvme).nvme_path(dir / "swap").chunk_elements(40));
  auto p = torch::zeros({100});
  opt.step(p, torch::ones({100}));
  fs::remove(dir / "swap" / "exp_avg_sq.1.swp");
  expect_error([&] { opt.step(p, torch::ones({100})); }, {"exp_avg_sq.1.swp", "No such file or directory"});
  expect_error([&] { opt.step(p, torch::ones({99})); }, {"99"});
  // The pages no longer hold one state: later steps refuse until load_state().
  expect_error([&] { opt.step(p, torch::ones({100})); }, {"an earlier step failed"});
  opt.load_state({{"exp_avg", torch::zeros({100})}, {"exp_avg_sq", torch::zeros({100})}}, 1);
  opt.step(p, torch::ones({100}));
  EXPECT_EQ(opt.step_count(), 2);
}

}  // namespace
