// The MLflow tracker's requests without a server: how values are split
// into log-batch calls (against the limits mlflow's client applies), how
// values become params and JSON, which names and addresses are refused.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <limits>
#include <string>

#include "accel/tracking/http_client.h"
#include "accel/tracking/mlflow_requests.h"
#include "support/errors.h"

namespace {

using accel::testing::expect_error;
namespace mlflow = accel::mlflow;

std::vector<mlflow::Metric> metrics(size_t n) {
  std::vector<mlflow::Metric> out;
  for (size_t i = 0; i < n; ++i) out.push_back({"m" + std::to_string(i), i * 0.5, 1000 + int64_t(i), int64_t(i)});
  return out;
}

std::vector<mlflow::KeyValue> pairs(const std::string& prefix, size_t n) {
  std::vector<mlflow::KeyValue> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(prefix + std::to_string(i), std::to_string(i));
  return out;
}

// {metrics, params, tags} counts of each call.
std::vector<std::array<size_t, 3>> shape(const std::vector<nlohmann::json>& bodies) {
  std::vector<std::array<size_t, 3>> out;
  for (const auto& b : bodies) out.push_back({b["metrics"].size(), b["params"].size(), b["tags"].size()});
  return out;
}

TEST(MLflowRequests, BatchesFollowMlflowsClientSplit) {
  using S = std::vector<std::array<size_t, 3>>;
  EXPECT_EQ(shape(mlflow::log_batch_bodies("r", metrics(2500), {}, {})), (S{{1000, 0, 0}, {1000, 0, 0}, {500, 0, 0}}));
  // 250 params and 30 tags: three rounds side by side, each filled with
  // metrics up to 1000 entities, then the metrics left 1000 at a time.
  EXPECT_EQ(shape(mlflow::log_batch_bodies("r", metrics(3000), pairs("p", 250), pairs("t", 30))),
            (S{{870, 100, 30}, {900, 100, 0}, {950, 50, 0}, {280, 0, 0}}));
  EXPECT_TRUE(mlflow::log_batch_bodies("r", {}, {}, {}).empty());
  // Every value once, in order, with its step and time.
  const auto bodies = mlflow::log_batch_bodies("run1", metrics(1500), pairs("p", 120), {});
  size_t i = 0;
  for (const auto& b : bodies) {
    EXPECT_EQ(b["run_id"], "run1");
    for (const auto& m : b["metrics"]) {
      EXPECT_EQ(m["key"], "m" + std::to_string(i));
      EXPECT_EQ(m["value"], i * 0.5);
      EXPECT_EQ(m["step"], i);
      EXPECT_EQ(m["timestamp"], 1000 + i);
      ++i;
    }
  }
  EXPECT_EQ(i, 1500u);
}

TEST(MLflowRequests, ValuesAsThePythonClientSendsThem) {
  EXPECT_EQ(mlflow::double_json(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(mlflow::double_json(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(mlflow::double_json(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(mlflow::double_json(0.1).dump(), "0.1");
  // Python's str(): what MLflow stores for a param.
  EXPECT_EQ(mlflow::param_text(true), "True");
  EXPECT_EQ(mlflow::param_text(int64_t{-3}), "-3");
  EXPECT_EQ(mlflow::param_text(0.003), "0.003");
  EXPECT_EQ(mlflow::param_text(1e-05), "1e-05");
  EXPECT_EQ(mlflow::param_text(100.0), "100.0");
  EXPECT_EQ(mlflow::param_text(1e16), "1e+16");
  EXPECT_EQ(mlflow::param_text(std::string("adamw")), "adamw");
  EXPECT_EQ(mlflow::error_text(R"({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})"),
            "INVALID_PARAMETER_VALUE: bad");
  EXPECT_EQ(mlflow::error_text("<html>oops</html>"), "<html>oops</html>");
}

TEST(MLflowRequests, NamesMlflowRefusesAreRefused) {
  for (const std::string ok : {"loss", "train/loss", "a b.c-d:e_f", "ünï"})
    EXPECT_FALSE(mlflow::invalid_name(ok)) << ok;
  for (const std::string bad :
       std::vector<std::string>{"", "a\"b", "a,b", "/abs", "a//b", "a/", "./a", "a/../b", "..", std::string(251, 'x')})
    EXPECT_TRUE(mlflow::invalid_name(bad)) << bad;
}

TEST(HttpClient, AddressesOtherThanHttpAreRefusedByName) {
  const auto a = accel::parse_http_uri("http://127.0.0.1:5000/mlflow/", "URI");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 5000);
  EXPECT_EQ(a.prefix, "/mlflow");
  EXPECT_EQ(accel::parse_http_uri("http://tracking", "URI").port, 80);
  EXPECT_EQ(accel::parse_http_uri("http://[::1]:8080", "URI").host, "::1");
  expect_error<std::invalid_argument>([] { accel::parse_http_uri("https://mlflow.example.com", "URI"); },
                                      {"\"https://mlflow.example.com\"", "https", "http://"});
  expect_error<std::invalid_argument>([] { accel::parse_http_uri("sqlite:///mlflow.db", "URI"); },
                                      {"\"sqlite:///mlflow.db\"", "http://"});
  expect_error<std::invalid_argument>([] { accel::parse_http_uri("http://host:99999", "URI"); }, {"\"99999\""});
  expect_error<std::invalid_argument>([] { accel::parse_http_uri("http://:80", "URI"); }, {"no host"});
}

TEST(HttpClient, AClosedPortIsUnreachableNamingTheAddress) {
  // A port taken and released: nothing listens there now.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  const std::string uri = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  expect_error<accel::HttpUnreachable>(
      [&] {
        accel::http_request(accel::parse_http_uri(uri, "URI"), "GET", "/health", "", {}, std::chrono::seconds(5));
      },
      {uri, "refused"});
}

}  // namespace
