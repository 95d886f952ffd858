// Issue 20, crashes on untrusted input: no reader of a user's file recurses
// without a bound on the input's depth or length (std::regex over a long
// scalar, a parser or dump() over JSON nested 200,000 deep), and no error
// message repeats a value whole. Each reader gets the hostile input and must
// refuse it (or read it) with a short message naming the file and the key.
#include <filesystem>
#include <fstream>
#include <source_location>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/data/loader_state.h"
#include "accel/launch/cluster_config.h"
#include "accel/launch/value.h"
#include "accel/parallel/sharding_config.h"
#include "accel/parallel/zero/flat_layout.h"
#include "accel/util/excerpt.h"
#include "accel/util/json_depth.h"
#include "support/errors.h"
#include "support/temp_dir.h"

namespace accel {
namespace {

namespace fs = std::filesystem;
using accel::testing::TempDir;

std::string nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

// Runs `f`, expects an exception of type E whose message holds every part
// and stays short (a hostile value is quoted by a prefix only).
template <class E, class F>
void expect_short_refusal(F f, const std::vector<std::string>& parts, size_t max_message = 600,
                          std::source_location where = std::source_location::current()) {
  const std::string m = accel::testing::expect_error<E>(f, parts, where);
  EXPECT_LE(m.size(), max_message) << excerpt(m, 400);
}

class BoundedInput : public ::testing::Test {
 protected:
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  TempDir dir_{"bounded"};
};

TEST(JsonDepth, RefusesDeepNestingWithoutRecursing) {
  EXPECT_NO_THROW(check_json_depth(nested(kMaxJsonDepth)));
  expect_short_refusal<std::invalid_argument>([] { check_json_depth(nested(kMaxJsonDepth + 1)); },
                                              {"deeper than 64", "at byte 64"});
  expect_short_refusal<std::invalid_argument>([] { check_json_depth(nested(1'000'000, '{', '}')); },
                                              {"deeper than 64"});
  // Brackets inside strings (escaped quotes included) are text, not nesting.
  EXPECT_NO_THROW(check_json_depth("{\"a\": \"" + std::string(1000, '[') + "\\\"[[[\"}"));
  EXPECT_NO_THROW(check_json_depth("[" + std::string(100'000, '"') + "]"));
}

TEST(Excerpt, CutsLongValuesAndKeepsShortOnes) {
  EXPECT_EQ(excerpt("short"), "short");
  EXPECT_EQ(excerpt(std::string(64, 'x')), std::string(64, 'x'));
  EXPECT_EQ(excerpt(std::string(100'000, '7')), std::string(64, '7') + "... (100000 bytes)");
  // Never half a UTF-8 character: "é" is 2 bytes, the cut backs up before it.
  const std::string accents = std::string(63, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(excerpt(accents).substr(0, 64), std::string(63, 'a') + ".");
}

TEST(YamlScalar, LongPlainScalarsResolveWithoutRegexRecursion) {
  using launch::resolve_plain_scalar;
  using launch::Value;
  const std::string digits = "1" + std::string(100'000, '0');
  EXPECT_EQ(resolve_plain_scalar(digits).kind, Value::Kind::text);  // past long long: kept as written
  EXPECT_EQ(resolve_plain_scalar(std::string(1'000'000, 'a')).kind, Value::Kind::text);
  EXPECT_EQ(resolve_plain_scalar("0." + std::string(100'000, '5')).kind, Value::Kind::number);
  // PyYAML's resolution, unchanged.
  EXPECT_EQ(resolve_plain_scalar("1_000").integer, 1000);
  EXPECT_EQ(resolve_plain_scalar("-42").integer, -42);
  EXPECT_EQ(resolve_plain_scalar("+7").integer, 7);
  EXPECT_EQ(resolve_plain_scalar("012").kind, Value::Kind::text);  // not a YAML 1.1 decimal here
  EXPECT_EQ(resolve_plain_scalar("1e5").kind, Value::Kind::text);  // a float needs a '.'
  EXPECT_DOUBLE_EQ(resolve_plain_scalar("1.5e+3").number, 1500);
  EXPECT_DOUBLE_EQ(resolve_plain_scalar(".5").number, 0.5);
  EXPECT_TRUE(std::isinf(resolve_plain_scalar("1.0e+999").number));  // Python's float(): inf
  EXPECT_TRUE(std::isinf(resolve_plain_scalar("-.inf").number));
  EXPECT_TRUE(std::isnan(resolve_plain_scalar(".NaN").number));
  EXPECT_EQ(resolve_plain_scalar(".").kind, Value::Kind::text);
  EXPECT_EQ(resolve_plain_scalar("1.5e3").kind, Value::Kind::text);  // YAML 1.1 wants the exponent's sign
  EXPECT_TRUE(resolve_plain_scalar("Off").kind == Value::Kind::boolean && !resolve_plain_scalar("Off").boolean);
  EXPECT_TRUE(resolve_plain_scalar("~").is_none());
}

TEST(YamlConfig, HostileValuesAreReadOrRefusedByName) {
  const std::string digits = "1" + std::string(100'000, '0');
  // gpu_ids takes any text: read as written.
  auto c = launch::ClusterConfig::parse("distributed_type: MULTI_GPU\ngpu_ids: " + digits + "\n", "cfg.yaml");
  EXPECT_EQ(c.get("gpu_ids").str(), digits);
  // num_processes wants an integer: refused, the value cut short.
  expect_short_refusal<std::invalid_argument>(
      [&] { launch::ClusterConfig::parse("distributed_type: NO\nnum_processes: " + digits + "\n", "cfg.yaml"); },
      {"cfg.yaml", "num_processes", "100001 bytes"});
  // A long key is named by its prefix (YAML itself refuses a plain key past 1024 characters).
  expect_short_refusal<std::invalid_argument>(
      [&] { launch::ClusterConfig::parse("distributed_type: NO\n" + std::string(1000, 'k') + ": 1\n", "cfg.yaml"); },
      {"unknown config key", "1000 bytes"}, 2000);
  expect_short_refusal<std::invalid_argument>(
      [&] { launch::ClusterConfig::parse("distributed_type: NO\n" + std::string(100'000, 'k') + ": 1\n", "cfg.yaml"); },
      {"cfg.yaml", "not valid YAML"});
  // Deep YAML nesting: yaml-cpp's own depth limit, a parse error.
  expect_short_refusal<std::invalid_argument>(
      [&] { launch::ClusterConfig::parse("gpu_ids: " + nested(100'000) + "\n", "cfg.yaml"); }, {"cfg.yaml"});
}

TEST(DeepSpeedJson, DeepNestingAndHugeValuesAreRefusedShort) {
  expect_short_refusal<std::invalid_argument>(
      [] { parse_deepspeed_config("{\"zero_optimization\": " + nested(200'000) + "}", "ds.json"); },
      {"ds.json", "nests deeper than 64"});
  // Nested within the limit but the wrong type: the value is quoted by a prefix.
  expect_short_refusal<std::invalid_argument>(
      [] { parse_deepspeed_config("{\"zero_optimization\": " + nested(60) + "}", "ds.json"); },
      {"ds.json", "zero_optimization"});
  expect_short_refusal<std::invalid_argument>(
      [&] {
        parse_deepspeed_config(
            "{\"zero_optimization\": {\"stage\": 1}, \"train_batch_size\": \"" + std::string(1'000'000, 'x') + "\"}",
            "ds.json");
      },
      {"ds.json", "train_batch_size", "bytes"});
  // A broken number of a million digits: the parser's message is cut too.
  expect_short_refusal<std::invalid_argument>(
      [&] { parse_deepspeed_config("{\"train_batch_size\": " + std::string(1'000'000, '1') + "x}", "ds.json"); },
      {"ds.json", "not valid JSON"});
}

TEST_F(BoundedInput, StateFilesRefuseDeepNesting) {
  const std::string deep = "{\"format\": " + nested(200'000) + "}";
  expect_short_refusal<std::invalid_argument>([&] { LoaderState::from_string(deep); }, {"nests deeper"});
  expect_short_refusal<std::runtime_error>([&] { zero::FlatLayout::from_json(deep, "'zero_layout.json'"); },
                                           {"zero_layout.json", "nests deeper"});
  auto param = torch::zeros({2}, torch::requires_grad());
  torch::optim::Adam adam({param});
  expect_short_refusal<std::runtime_error>(
      [&] { load_optimizer_state(adam, safetensors::OrderedTensors{}, deep, "'optimizer.json'"); },
      {"optimizer.json", "nests deeper"});
  // merge-weights' zero_layout.json and a model index.
  write("zero_layout.json", deep);
  expect_short_refusal<std::runtime_error>([&] { merged_zero_weights(dir_); }, {"zero_layout.json", "nests deeper"});
  write("model.safetensors.index.json", "{\"weight_map\": " + nested(200'000, '{', '}') + "}");
  expect_short_refusal<std::runtime_error>([&] { find_checkpoint_files(dir_); }, {"index", "nests deeper"});
}

TEST_F(BoundedInput, StateFileValuesAreQuotedShort) {
  auto param = torch::zeros({2}, torch::requires_grad());
  torch::optim::Adam adam({param});
  const std::string huge = "\"" + std::string(1'000'000, 'x') + "\"";
  expect_short_refusal<std::runtime_error>(
      [&] {
        load_optimizer_state(adam, safetensors::OrderedTensors{},
                             "{\"format\": \"accel.optimizer/1\", \"type\": " + huge + "}", "'optimizer.json'");
      },
      {"optimizer.json", "bytes"});
  expect_short_refusal<std::invalid_argument>([&] { LoaderState::from_string("{\"epoch\": " + huge + "}"); },
                                              {"epoch", "bytes"});
}

}  // namespace
}  // namespace accel
