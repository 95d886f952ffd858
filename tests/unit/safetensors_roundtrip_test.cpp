// Tensors through safetensors files and back, bit for bit: every dtype,
// 0-d, empty and non-contiguous tensors, metadata, zero-copy reads, and
// atomic writes that leave the previous file intact when they fail.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/safetensors.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

namespace st = accel::safetensors;
using accel::testing::error_of;
using accel::testing::random_bits;
using accel::testing::read_file;
using accel::testing::TempDir;

namespace {

// The raw bytes of a tensor, row-major: compared instead of values so that
// NaN payloads and types without comparison kernels (uint32, float8) count.
std::string raw(const torch::Tensor& t) {
  auto c = t.resolve_conj().to(torch::kCPU).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

void expect_same(const torch::Tensor& expected, const torch::Tensor& actual, const std::string& name) {
  ASSERT_TRUE(actual.defined()) << name;
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << name;
  EXPECT_EQ(actual.sizes(), expected.sizes()) << name;
  EXPECT_EQ(raw(actual), raw(expected)) << name;
}

const std::vector<torch::ScalarType> kAllTypes{torch::kFloat64,         torch::kFloat32,
                                               torch::kFloat16,         torch::kBFloat16,
                                               torch::kInt64,           torch::kInt32,
                                               torch::kInt16,           torch::kInt8,
                                               torch::kUInt8,           torch::kBool,
                                               torch::kFloat8_e4m3fn,   torch::kFloat8_e5m2,
                                               torch::kFloat8_e8m0fnu,  torch::kFloat8_e4m3fnuz,
                                               torch::kFloat8_e5m2fnuz, torch::kUInt16,
                                               torch::kUInt32,          torch::kUInt64,
                                               torch::kComplexFloat};

class SafetensorsRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(7); }
  TempDir dir_{"safetensors"};
};

TEST_F(SafetensorsRoundTrip, EveryDtype) {
  st::NamedTensors tensors;
  for (auto type : kAllTypes) tensors.emplace_back(std::string("t_") + c10::toString(type), random_bits(type, {3, 5}));
  auto path = dir_ / "all.safetensors";
  st::save_file(tensors, path);
  auto loaded = st::load_file(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_same(t, loaded[name], name);
  // The in-memory writer and reader agree with the file ones.
  EXPECT_EQ(st::save(tensors), read_file(path));
  auto from_memory = st::load(read_file(path));
  for (const auto& [name, t] : tensors) expect_same(t, from_memory[name], name);
}

TEST_F(SafetensorsRoundTrip, ScalarEmptyAndNonContiguous) {
  auto base = torch::randn({4, 6});
  auto complex = torch::randn({3}, torch::kComplexFloat);
  st::NamedTensors tensors{
      {"scalar", torch::tensor(3.5)},
      {"scalar_int", torch::tensor(int64_t{-7})},
      {"empty", torch::zeros({0, 3})},
      {"empty_mid", torch::zeros({2, 0, 5}, torch::kBFloat16)},
      {"transposed", base.t()},
      {"strided", base.index({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)})},
      {"expanded", torch::arange(4, torch::kFloat32).expand({3, 4})},
      {"offset_view", base[2]},
      {"conjugated", complex.conj()},
  };
  auto path = dir_ / "shapes.safetensors";
  st::save_file(tensors, path);
  auto loaded = st::load_file(path);
  for (const auto& [name, t] : tensors) {
    expect_same(t, loaded[name], name);
    EXPECT_TRUE(loaded[name].is_contiguous()) << name;
  }
  EXPECT_EQ(loaded["scalar"].dim(), 0);
  EXPECT_EQ(loaded["conjugated"][1].item<c10::complex<float>>(), std::conj(complex[1].item<c10::complex<float>>()));
  // Only the view's 6 floats are written, not its whole storage.
  EXPECT_EQ(st::File(path).info("offset_view").nbytes(), 6u * 4);
}

TEST_F(SafetensorsRoundTrip, Metadata) {
  auto path = dir_ / "meta.safetensors";
  st::Metadata metadata{{"format", "pt"}, {"note", "quote \" backslash \\ newline \n unicode \xc3\xa9"}};
  st::save_file({{"w", torch::ones({2})}}, path, metadata);
  EXPECT_EQ(st::load_metadata(path), metadata);
  EXPECT_EQ(st::File(path).metadata(), metadata);
}

TEST_F(SafetensorsRoundTrip, ReadsShareTheMappingAndNeverWriteTheFile) {
  auto path = dir_ / "map.safetensors";
  auto original = torch::arange(16, torch::kFloat32);
  st::save_file({{"x", original}}, path);
  const std::string before = read_file(path);
  torch::Tensor a, b;
  {
    st::File file(path);
    a = file.get("x");
    b = file.get("x");
    // Both are views of one mapping, not copies.
    EXPECT_EQ(a.data_ptr(), b.data_ptr());
    auto owned = file.get("x", torch::kCPU);
    EXPECT_NE(owned.data_ptr(), a.data_ptr());
  }
  // The tensors outlive the File: they keep the mapping alive.
  expect_same(original, a, "x");
  a[3] = 100.f;
  EXPECT_EQ(b[3].item<float>(), 100.f);
  EXPECT_EQ(read_file(path), before);  // private mapping: the file is untouched
  EXPECT_EQ(st::load_file(path)["x"][3].item<float>(), 3.f);
}

TEST_F(SafetensorsRoundTrip, ReadIntoChecksShapeAndDtype) {
  auto path = dir_ / "into.safetensors";
  st::save_file({{"w", torch::arange(6, torch::kFloat32).reshape({2, 3})}}, path);
  st::File file(path);
  auto dst = torch::zeros({2, 3}, torch::kFloat32).requires_grad_();
  file.read_into("w", dst);
  EXPECT_EQ(dst[1][2].item<float>(), 5.f);
  auto wrong_shape = torch::zeros({3, 2});
  EXPECT_THROW(file.read_into("w", wrong_shape), std::invalid_argument);
  auto doubles = torch::zeros({2, 3}, torch::kFloat64);
  EXPECT_THROW(file.read_into("w", doubles), std::invalid_argument);
  file.read_into("w", doubles, /*allow_cast=*/true);
  EXPECT_EQ(doubles[1][2].item<double>(), 5.0);
  EXPECT_THROW(file.get("nope"), std::out_of_range);
}

// Leaves only `name` (no temporary files) in `dir`.
void expect_only_file(const std::filesystem::path& dir, const std::string& name) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{name});
}

TEST_F(SafetensorsRoundTrip, BadInputLeavesThePreviousFile) {
  auto path = dir_ / "model.safetensors";
  st::save_file({{"w", torch::ones({4})}}, path);
  const std::string before = read_file(path);
  // The bad tensor comes last in the layout: the writer must refuse before
  // replacing anything.
  EXPECT_THROW(st::save_file({{"a", torch::zeros({1000})}, {"z", torch::zeros({2}, torch::kComplexDouble)}}, path),
               std::invalid_argument);
  EXPECT_EQ(read_file(path), before);
  expect_only_file(dir_, "model.safetensors");
}

// Lowers the process's file size limit so that a write fails part way, as
// a full disk would; restores it on scope exit.
struct FileSizeLimit {
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved);
    old_handler = signal(SIGXFSZ, SIG_IGN);  // make write() fail with EFBIG
    rlimit lowered = saved;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
  }
  rlimit saved{};
  sighandler_t old_handler;
};

TEST_F(SafetensorsRoundTrip, FailureMidWriteLeavesThePreviousFile) {
  auto path = dir_ / "model.safetensors";
  st::save_file({{"w", torch::ones({4})}}, path);
  const std::string before = read_file(path);
  std::string error;
  {
    FileSizeLimit limit(64 * 1024);
    error = error_of<std::runtime_error>([&] { st::save_file({{"w", torch::randn({1 << 18})}}, path); });  // 1 MiB
  }
  EXPECT_NE(error.find("cannot write"), std::string::npos) << error;
  EXPECT_NE(error.find(path.string()), std::string::npos) << error;
  EXPECT_EQ(read_file(path), before);
  expect_only_file(dir_, "model.safetensors");
  // And the next save succeeds.
  st::save_file({{"w", torch::zeros({3})}}, path);
  EXPECT_EQ(st::load_file(path)["w"].numel(), 3);
}

TEST_F(SafetensorsRoundTrip, AtomicFileUncommittedLeavesNothing) {
  auto path = dir_ / "x.bin";
  {
    accel::AtomicFile file(path);
    file.write("partial");
    EXPECT_TRUE(std::filesystem::exists(file.temp_path()));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
  accel::write_file_atomic(path, "done");
  EXPECT_EQ(read_file(path), "done");
}

}  // namespace
