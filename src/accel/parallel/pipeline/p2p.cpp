#include "p2p.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel::pipeline_detail {

namespace {
// dtype, number of dimensions, then up to kMaxDims sizes.
constexpr int64_t kMaxDims = 8;
constexpr int64_t kHeaderSize = 2 + kMaxDims;
}  // namespace

void PendingSends::send(const ProcessGroupPtr& group, torch::Tensor tensor, int dst, int tag) {
  auto buf = tensor.contiguous();
  std::vector<torch::Tensor> ts{buf};
  sends_.emplace_back(group->send(ts, dst, tag), buf);
}

void PendingSends::wait_all() {
  for (auto& [work, tensor] : sends_) work->wait();
  sends_.clear();
}

PendingSends::~PendingSends() {
  // A step that threw leaves sends behind; their buffers must outlive them.
  try {
    wait_all();
  } catch (...) {
  }
}

void send_with_header(PendingSends& sends, const ProcessGroupPtr& group, const torch::Tensor& tensor, int dst,
                      int tag) {
  ACCEL_CHECK_ARG(tensor.dim() <= kMaxDims, "pipeline: a stage output of ", tensor.dim(), " dimensions; at most ",
                  kMaxDims, " are sent between stages");
  auto header = torch::zeros({kHeaderSize}, torch::TensorOptions().dtype(torch::kLong));
  auto h = header.accessor<int64_t, 1>();
  h[0] = static_cast<int64_t>(tensor.scalar_type());
  h[1] = tensor.dim();
  for (int64_t d = 0; d < tensor.dim(); ++d) h[2 + d] = tensor.size(d);
  sends.send(group, header.to(tensor.device()), dst, tag);
  sends.send(group, tensor.detach(), dst, tag + 1);
}

torch::Tensor recv_with_header(const ProcessGroupPtr& group, int src, int tag, torch::Device device) {
  auto header = torch::empty({kHeaderSize}, torch::TensorOptions().dtype(torch::kLong).device(device));
  std::vector<torch::Tensor> hs{header};
  group->recv(hs, src, tag)->wait();
  const auto host = header.cpu();
  auto h = host.accessor<int64_t, 1>();
  ACCEL_CHECK(h[1] >= 0 && h[1] <= kMaxDims, "pipeline: a header from stage ", src, " says ", h[1],
              " dimensions: the stages disagree on what they send");
  std::vector<int64_t> sizes(h.data() + 2, h.data() + 2 + h[1]);
  auto out = torch::empty(sizes, torch::TensorOptions().dtype(static_cast<c10::ScalarType>(h[0])).device(device));
  std::vector<torch::Tensor> ts{out};
  group->recv(ts, src, tag + 1)->wait();
  return out;
}

torch::Tensor recv_like(const ProcessGroupPtr& group, const torch::Tensor& like, int src, int tag) {
  auto out = torch::empty_like(like, torch::MemoryFormat::Contiguous);
  std::vector<torch::Tensor> ts{out};
  group->recv(ts, src, tag)->wait();
  return out;
}

}  // namespace accel::pipeline_detail
