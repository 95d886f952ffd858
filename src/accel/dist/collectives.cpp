#include "accel/dist/collectives.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "accel/state.h"
#include "accel/util/check.h"

namespace accel {
namespace {

// The group to use: the given one, else the global one (null when alone).
ProcessGroupPtr resolve(const ProcessGroupPtr& group) {
  if (group) return group;
  return ProcessState::get().process_group();
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return c10d::ReduceOp::SUM;
    case ReduceOp::max: return c10d::ReduceOp::MAX;
    case ReduceOp::min: return c10d::ReduceOp::MIN;
    case ReduceOp::product: return c10d::ReduceOp::PRODUCT;
  }
  fail<std::invalid_argument>("unknown reduce op");
}

std::vector<torch::Tensor> all_gather_equal(const torch::Tensor& t, const ProcessGroupPtr& pg) {
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < pg->getSize(); ++r) out[0].push_back(torch::empty_like(t));
  std::vector<torch::Tensor> in{t};
  pg->allgather(out, in)->wait();
  return out[0];
}

// Every rank's shape; ranks must agree on the number of dimensions.
std::vector<std::vector<int64_t>> gather_shapes(const torch::Tensor& t, const ProcessGroupPtr& pg) {
  auto dims = torch::tensor({t.dim()}, torch::kInt64);
  auto all_dims = all_gather_equal(dims, pg);
  for (int r = 0; r < pg->getSize(); ++r) {
    ACCEL_CHECK_ARG(all_dims[r].item<int64_t>() == t.dim(),
                    "tensors differ in number of dimensions across ranks: rank ", r, " has ",
                    all_dims[r].item<int64_t>(), ", rank ", pg->getRank(), " has ", t.dim());
  }
  auto shape = torch::tensor(t.sizes().vec(), torch::kInt64);
  std::vector<std::vector<int64_t>> shapes;
  for (auto& s : all_gather_equal(shape, pg)) {
    auto acc = s.accessor<int64_t, 1>();
    std::vector<int64_t> v(acc.size(0));
    for (int64_t i = 0; i < acc.size(0); ++i) v[i] = acc[i];
    shapes.push_back(v);
  }
  return shapes;
}

}  // namespace

torch::Tensor gather(const torch::Tensor& tensor, const ProcessGroupPtr& group) {
  auto t = tensor.dim() == 0 ? tensor.reshape({1}) : tensor;
  auto pg = resolve(group);
  if (!pg) return t.clone();
  auto shapes = gather_shapes(t, pg);
  for (int r = 0; r < pg->getSize(); ++r)
    ACCEL_CHECK_ARG(shapes[r] == t.sizes().vec(), "gather needs equal shapes on every rank: rank ", r, " has ",
                    c10::IntArrayRef(shapes[r]), ", rank ", pg->getRank(), " has ", t.sizes(),
                    " (use pad_across_processes first)");
  return torch::cat(all_gather_equal(t.contiguous(), pg), 0);
}

void all_reduce_(torch::Tensor& tensor, ReduceOp op, const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  if (!pg) return;
  std::vector<torch::Tensor> ts{tensor};
  c10d::AllreduceOptions opts;
  opts.reduceOp = to_c10d(op);
  pg->allreduce(ts, opts)->wait();
  if (op == ReduceOp::mean) tensor.div_(pg->getSize());
}

torch::Tensor reduce(const torch::Tensor& tensor, ReduceOp op, const ProcessGroupPtr& group) {
  auto out = tensor.clone(at::MemoryFormat::Contiguous);
  all_reduce_(out, op, group);
  return out;
}

torch::Tensor broadcast(torch::Tensor tensor, int src, const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  if (!pg) return tensor;
  ACCEL_CHECK_ARG(src >= 0 && src < pg->getSize(), "broadcast: source rank ", src, " is not in [0, ", pg->getSize(),
                  ")");
  auto buf = tensor.is_contiguous() ? tensor : tensor.contiguous();
  std::vector<torch::Tensor> ts{buf};
  c10d::BroadcastOptions opts;
  opts.rootRank = src;
  pg->broadcast(ts, opts)->wait();
  if (!buf.is_same(tensor)) tensor.copy_(buf);
  return tensor;
}

torch::Tensor pad_across_processes(const torch::Tensor& tensor, int64_t dim, double pad_index, bool pad_first,
                                   const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  // Like Accelerate: a dim the tensor does not have leaves it as it is.
  if (!pg || dim >= tensor.dim() || dim < -tensor.dim()) return tensor;
  if (dim < 0) dim += tensor.dim();
  auto shapes = gather_shapes(tensor, pg);
  int64_t max_size = 0;
  for (auto& s : shapes) max_size = std::max(max_size, s[dim]);
  if (max_size == tensor.size(dim)) return tensor;
  auto new_shape = tensor.sizes().vec();
  new_shape[dim] = max_size;
  auto out = torch::full(new_shape, pad_index, tensor.options());
  int64_t start = pad_first ? max_size - tensor.size(dim) : 0;
  out.narrow(dim, start, tensor.size(dim)).copy_(tensor);
  return out;
}

std::vector<std::string> gather_object(const std::string& bytes, const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  if (!pg) return {bytes};
  auto len = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
  auto lens = all_gather_equal(len, pg);
  int64_t max_len = 0;
  for (auto& l : lens) max_len = std::max(max_len, l.item<int64_t>());
  auto buf = torch::zeros({std::max<int64_t>(max_len, 1)}, torch::kUInt8);
  std::memcpy(buf.data_ptr(), bytes.data(), bytes.size());
  auto all = all_gather_equal(buf, pg);
  std::vector<std::string> out;
  for (int r = 0; r < pg->getSize(); ++r)
    out.emplace_back(static_cast<const char*>(all[r].data_ptr()), static_cast<size_t>(lens[r].item<int64_t>()));
  return out;
}

std::string broadcast_object(const std::string& bytes, int src, const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  if (!pg) return bytes;
  auto len = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
  broadcast(len, src, pg);
  const auto n = len.item<int64_t>();
  auto buf = torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8);
  if (pg->getRank() == src) std::memcpy(buf.data_ptr(), bytes.data(), bytes.size());
  broadcast(buf, src, pg);
  return std::string(static_cast<const char*>(buf.data_ptr()), static_cast<size_t>(n));
}

void wait_for_everyone(const ProcessGroupPtr& group) {
  auto pg = resolve(group);
  if (!pg) return;
  // A CPU all-reduce through Gloo: a true host-side barrier on every backend.
  auto t = torch::zeros({1}, torch::kFloat32);
  all_reduce_(t, ReduceOp::sum, pg);
}

namespace {
void goes_first(bool first, const std::function<void()>& fn) {
  if (!first) wait_for_everyone();
  fn();
  if (first) wait_for_everyone();
}
}  // namespace

void main_process_first(const std::function<void()>& fn) { goes_first(ProcessState::get().is_main_process(), fn); }

void local_main_process_first(const std::function<void()>& fn) {
  goes_first(ProcessState::get().is_local_main_process(), fn);
}

void on_main_process(const std::function<void()>& fn) {
  if (ProcessState::get().is_main_process()) fn();
}

void on_local_main_process(const std::function<void()>& fn) {
  if (ProcessState::get().is_local_main_process()) fn();
}

std::pair<int64_t, int64_t> split_range(int64_t length, int rank, int world_size) {
  const int64_t per = length / world_size, extras = length % world_size;
  const int64_t begin = rank * per + std::min<int64_t>(rank, extras);
  const int64_t end = begin + per + (rank < extras ? 1 : 0);
  return {begin, end};
}

torch::Tensor split_between_processes(const torch::Tensor& items, bool apply_padding) {
  auto& st = ProcessState::get();
  const int world = st.world_size();
  if (world == 1) return items;
  const int64_t n = items.size(0);
  auto [begin, end] = split_range(n, st.rank(), world);
  torch::Tensor out =
      begin >= n ? items.narrow(0, std::max<int64_t>(n - 1, 0), n > 0 ? 1 : 0) : items.narrow(0, begin, end - begin);
  if (apply_padding && out.size(0) > 0) {
    const int64_t target = n / world + (n % world > 0 ? 1 : 0);
    if (out.size(0) < target) {
      auto last = out.narrow(0, out.size(0) - 1, 1);
      std::vector<int64_t> reps(out.dim(), 1);
      reps[0] = target - out.size(0);
      out = torch::cat({out, last.repeat(reps)}, 0);
    }
  }
  return out;
}

}  // namespace accel
