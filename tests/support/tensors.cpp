#include "support/tensors.h"

#include <algorithm>
#include <limits>

#include <gtest/gtest.h>

namespace accel::testing {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

double max_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, max_diff(a[i], b[i]));
  return d;
}

std::vector<int64_t> int64_values(const torch::Tensor& t) {
  const auto c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

torch::Tensor random_bits(torch::ScalarType type, std::vector<int64_t> shape) {
  if (type == torch::kBool) return torch::randint(0, 2, shape, torch::kUInt8).to(torch::kBool);
  // The bytes as uint8, the last dimension widened by the element size.
  auto byte_shape = shape.empty() ? std::vector<int64_t>{1} : shape;
  byte_shape.back() *= static_cast<int64_t>(c10::elementSize(type));
  auto t = torch::randint(0, 256, byte_shape, torch::kUInt8).view(type);
  return shape.empty() ? t.reshape({}) : t;
}

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters()) out.push_back(p.detach().clone().to(torch::kFloat));
  return out;
}

void expect_close(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want, double tol,
                  std::source_location where) {
  if (got.size() != want.size()) {
    ADD_FAILURE_AT(where.file_name(), where.line()) << got.size() << " tensors, expected " << want.size();
    return;
  }
  for (size_t i = 0; i < got.size(); ++i)
    if (const double d = max_diff(got[i], want[i]); !(d < tol))
      ADD_FAILURE_AT(where.file_name(), where.line())
          << "tensor " << i << " " << got[i].sizes() << " differs by " << d << ", more than " << tol;
}

void expect_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what,
                  std::source_location where) {
  if (got.sizes() != want.sizes() || got.scalar_type() != want.scalar_type())
    ADD_FAILURE_AT(where.file_name(), where.line()) << what << " is " << got.scalar_type() << " " << got.sizes()
                                                    << ", expected " << want.scalar_type() << " " << want.sizes();
  else if (!torch::equal(got, want))
    ADD_FAILURE_AT(where.file_name(), where.line()) << what << " differs, by up to " << max_diff(got, want);
}

void expect_equal(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want,
                  const std::string& what, std::source_location where) {
  if (got.size() != want.size()) {
    ADD_FAILURE_AT(where.file_name(), where.line())
        << what << ": " << got.size() << " tensors, expected " << want.size();
    return;
  }
  for (size_t i = 0; i < got.size(); ++i) expect_equal(got[i], want[i], what + ": tensor " + std::to_string(i), where);
}

}  // namespace accel::testing
