#pragma once
// Comparing tensors: how far apart two results are, and expectations that
// name the tensor that differs.
#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace accel::testing {

/// The largest |a - b| over the elements of two tensors of one shape.
double max_diff(const torch::Tensor& a, const torch::Tensor& b);

/// The largest |a[i] - b[i]| over two lists of tensors; infinity where the
/// lists differ in length (so that a check against a tolerance fails).
double max_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b);

/// The elements of `t`, as int64, in order (a batch of row indices, say).
std::vector<int64_t> int64_values(const torch::Tensor& t);

/// A tensor of `type` and `shape` with random bits: every byte from the
/// default generator (bool: 0 or 1, its only valid values).
torch::Tensor random_bits(torch::ScalarType type, std::vector<int64_t> shape);

/// Detached copies of `tensors` (the values before a step, say).
std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& tensors);

/// Detached fp32 copies of a module's parameters, in its order.
std::vector<torch::Tensor> snapshot(torch::nn::Module& module);

/// Expects as many tensors in `got` as in `want`, each within `tol` of its
/// counterpart; a failure names the tensor and its largest difference.
void expect_close(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want, double tol,
                  std::source_location where = std::source_location::current());

/// Expects `got` to equal `want` exactly (torch::equal); `what` names them.
void expect_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what,
                  std::source_location where = std::source_location::current());
void expect_equal(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want,
                  const std::string& what, std::source_location where = std::source_location::current());

}  // namespace accel::testing
