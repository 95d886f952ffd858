#pragma once
// Point-to-point transfers between pipeline stages over a c10d group:
// sends left in flight until the step ends, and tensors whose dtype and
// shape travel with them in a small header.
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "accel/dist/collectives.h"

namespace accel::pipeline_detail {

/// Sends not yet known to be done, each with its tensor (which the backend
/// reads until the send completes, so it must stay alive until then).
class PendingSends {
 public:
  void send(const ProcessGroupPtr& group, torch::Tensor tensor, int dst, int tag);
  void wait_all();
  ~PendingSends();

 private:
  std::vector<std::pair<c10::intrusive_ptr<c10d::Work>, torch::Tensor>> sends_;
};

/// Sends a header (dtype, rank, sizes) with `tag`, then `tensor` with tag + 1, to `dst`.
void send_with_header(PendingSends& sends, const ProcessGroupPtr& group, const torch::Tensor& tensor, int dst, int tag);
/// Receives what send_with_header sent from `src` with the same tag, placed on `device`.
torch::Tensor recv_with_header(const ProcessGroupPtr& group, int src, int tag, torch::Device device);
/// Receives a tensor of the shape and dtype of `like` from `src`.
torch::Tensor recv_like(const ProcessGroupPtr& group, const torch::Tensor& like, int src, int tag);

}  // namespace accel::pipeline_detail
