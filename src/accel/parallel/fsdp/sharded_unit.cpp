#include "accel/parallel/fsdp/sharded_unit.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include <c10/core/StreamGuard.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>

#include "accel/big_model/empty_init.h"
#include "accel/parallel/fsdp/copy_streams.h"
#include "accel/parallel/fsdp/freed_memory_guard.h"
#include "accel/parallel/fsdp/state_file.h"
#include "accel/parallel/fsdp/storage_memory.h"
#include "accel/util/check.h"
#include "accel/util/host_memory.h"

namespace accel::fsdp {

namespace {

// fp16/bf16 parameters keep fp32 shards (the optimizer's masters).
torch::ScalarType shard_dtype(torch::ScalarType t) {
  return t == torch::kHalf || t == torch::kBFloat16 ? torch::kFloat : t;
}

using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;

// Trainable parameters first: their kind is the one gradients flow through.
std::pair<NamedParams, NamedParams> by_kind(const NamedParams& params) {
  std::pair<NamedParams, NamedParams> out;
  for (const auto& item : params) (item.second.requires_grad() ? out.first : out.second).push_back(item);
  return out;
}

}  // namespace

int64_t ShardedUnit::shard_numel(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world_size) {
  const auto [trainable, frozen] = by_kind(params);
  int64_t numel = 0;
  for (const auto* list : {&trainable, &frozen})
    if (!list->empty())
      numel += zero::FlatLayout::build({*list}, world_size, ShardingStrategy::full_shard).groups.at(0).padded_numel /
               world_size;
  return numel;
}

ShardedUnit::ShardedUnit(std::string path, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                         c10::intrusive_ptr<c10d::ProcessGroup> group, c10::intrusive_ptr<c10d::ProcessGroup> replicas,
                         ShardPlacement placement, const FromMainProcess* from_main, const MixedPrecisionPolicy& policy)
    : path_(std::move(path)),
      param_dtype_(policy.param_dtype()),
      reduce_dtype_(policy.reduce_dtype()),
      group_(std::move(group)),
      replicas_(std::move(replicas)),
      placement_(placement) {
  if (placement_.nvme_folder) placement_.host_params = true;
  if (placement_.host_params) placement_.host_masters = true;
  const std::string where = path_.empty() ? "the root unit" : "unit " + path_;
  ACCEL_CHECK_ARG(!params.empty(), "parameter sharding: ", where, " has no parameters");
  const auto [trainable, frozen] = by_kind(params);
  num_trainable_ = trainable.size();
  const auto& first = params.front().second;
  const std::vector<std::pair<std::string, torch::Tensor>>* lists[] = {&trainable, &frozen};
  for (const auto* list : lists) {
    for (const auto& [name, p] : *list) {
      ACCEL_CHECK_ARG(p.is_floating_point(), "parameter sharding: parameter '", name, "' is ",
                      c10::toString(p.scalar_type()), "; only floating-point parameters can be sharded");
      ACCEL_CHECK_ARG(p.scalar_type() == first.scalar_type() && p.device() == first.device(),
                      "parameter sharding: parameter '", name, "' is ", c10::toString(p.scalar_type()), " on ",
                      p.device().str(), ", the others of ", where, " are ", c10::toString(first.scalar_type()), " on ",
                      first.device().str(), "; one dtype and device per unit");
      names_.push_back(name);
      params_.push_back(p);
    }
  }

  ACCEL_CHECK_ARG(!first.is_meta() || from_main, "parameter sharding: parameter '", names_.front(),
                  "' is on the meta device, and no process holds its values; build the model with its weights "
                  "on the main process");
  // Meta parameters get their memory here, on the device the run uses.
  const c10::Device device = first.is_meta() ? from_main->device : first.device();

  torch::NoGradGuard no_grad;
  const int n = world_size(), r = rank();
  dtype_ = first.scalar_type();
  const auto dtype = shard_dtype(dtype_), compute = compute_dtype();
  const bool pin = placement_.pin_memory && first.is_cuda();
  std::vector<zero::FlatGroup> layouts;
  for (const auto* list : lists)
    if (!list->empty())
      layouts.push_back(zero::FlatLayout::build({*list}, n, ShardingStrategy::full_shard).groups.at(0));
  if (placement_.nvme_folder) {  // room for each kind's shard and, if another dtype, its copy
    int64_t bytes = 0;
    for (const auto& layout : layouts) {
      bytes += StateFile::room_for(layout.padded_numel / n, dtype);
      if (dtype != compute) bytes += StateFile::room_for(layout.padded_numel / n, compute);
    }
    file_ = StateFile::create(placement_.nvme_folder->path() / ((path_.empty() ? "root" : path_) + ".params"), bytes,
                              placement_.nvme_folder);
  }
  // Host memory for an offloaded shard: page-locked, or pages of the file.
  auto host_tensor = [&](int64_t numel, torch::ScalarType type) {
    return file_ ? file_->allocate(numel, type) : host_empty(numel, type, pin);
  };
  piece_place_.resize(params_.size());
  piece_begin_.resize(params_.size());
  pieces_.resize(params_.size());
  size_t index = 0;
  for (const auto* kind_params : lists) {
    const auto& list = *kind_params;
    if (list.empty()) continue;
    Kind kind;
    kind.layout = layouts.at(kinds_.size());
    const int64_t slice = kind.layout.padded_numel / n;
    kind.full =
        torch::zeros({kind.layout.padded_numel}, first.options().dtype(compute).device(device).requires_grad(false));
    // The parameters' values in their own dtype: the shards are cut from
    // these, not from a cast copy.
    auto values = casts()
                      ? torch::zeros({kind.layout.padded_numel}, first.options().device(device).requires_grad(false))
                      : kind.full;
    if (kind.full.is_cpu())
      kind.freed = std::make_shared<FreedMemoryGuard>(
          kind.full.nbytes(), path_.empty() ? std::string("the root unit (the parameters outside every sharded unit)")
                                            : "sharded unit '" + path_ + "'");
    for (size_t i = 0; i < list.size(); ++i, ++index) {
      const auto& fp = kind.layout.params[i];
      auto view = kind.full.narrow(0, fp.offset, fp.numel).view(fp.shape);
      if (params_[index].is_meta()) {
        replace_tensor_data(params_[index], view);  // set_data refuses to leave the meta device
      } else {
        values.narrow(0, fp.offset, fp.numel).view(fp.shape).copy_(params_[index]);
        // A cast changes the dtype, which set_data allows: the gradient
        // accumulator, made for the old dtype, is made again at first use.
        params_[index].set_data(view);
      }
      kind.members.push_back(index);
    }
    if (from_main) {  // the main process's values, on every rank
      std::vector<at::Tensor> whole{values};
      from_main->group->broadcast(whole)->wait();
    }
    if (!values.is_same(kind.full)) kind.full.copy_(values);
    const auto mine = values.narrow(0, r * slice, slice);
    const bool trainable_kind = kind_params == &trainable;
    if (placement_.host_masters) {
      kind.shard = host_tensor(slice, dtype);
      kind.shard.copy_(mine);
      if (trainable_kind) kind.grad_shard = host_empty(slice, dtype, pin).zero_();
      if (dtype == compute) {
        kind.host_copy = kind.shard;
      } else {
        kind.host_copy = host_tensor(slice, compute);
        kind.host_copy.copy_(mine);
      }
      if (!placement_.host_params) kind.device_copy = mine.to(compute, /*non_blocking=*/false, /*copy=*/true);
    } else {
      kind.shard = mine.to(dtype, /*non_blocking=*/false, /*copy=*/true);
      if (trainable_kind) kind.grad_shard = torch::zeros_like(kind.shard);
    }
    const size_t k = kinds_.size();
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& fp = kind.layout.params[i];
      const int64_t lo = std::max(fp.offset, r * slice), hi = std::min(fp.offset + fp.numel, (r + 1) * slice);
      const int64_t begin = std::min(lo - r * slice, slice), length = std::max<int64_t>(hi - lo, 0);
      const size_t member = kind.members[i];
      auto piece = kind.shard.narrow(0, begin, length).detach();
      piece.set_requires_grad(params_[member].requires_grad());
      pieces_[member] = piece;
      piece_place_[member] = {k, begin};
      piece_begin_[member] = length > 0 ? lo - fp.offset : 0;
    }
    kinds_.push_back(std::move(kind));
  }
  reshard();
}

void ShardedUnit::unshard() {
  if (unsharded_) return;
  wait_for_update();
  read_ahead();  // the whole copy at once, rather than a page per fault
  ++gathers_;
  torch::NoGradGuard no_grad;
  if (kept_group_) {  // the slices kept after forward, on the compute stream where they were cut
    for (auto& kind : kinds_) {
      allocate_storage(kind.full, kind.full.numel() * kind.full.element_size());
      kept_group_->_allgather_base(kind.full, kind.kept)->wait();
      kind.kept = torch::Tensor();
    }
    kept_group_.reset();
    ++slice_gathers_;
    unsharded_ = true;
    return;
  }
  // Offloaded on CUDA, the gathered buffers are allocated and filled on the
  // copy stream, and the compute stream waits for them: the copy overlaps
  // whatever the compute stream still has queued (the previous unit's
  // kernels). From host memory the copy is asynchronous (page-locked): the
  // host copy is not written again before the device has caught up (the
  // optimizer step waits for it).
  const bool on_side = gathers_on_copy_stream();
  std::optional<c10::Stream> compute;
  std::optional<c10::StreamGuard> on_copy;
  if (on_side) {
    compute = current_stream(kinds_.front().full.device());
    on_copy.emplace(streams_->to_device);
  }
  for (auto& kind : kinds_) {
    allocate_storage(kind.full, kind.full.numel() * kind.full.element_size());
    auto input = gather_input(kind);
    if (group_) {
      if (input.device() != kind.full.device()) input = input.to(kind.full.device(), /*non_blocking=*/true);
      group_->_allgather_base(kind.full, input)->wait();
    } else {
      kind.full.copy_(input, /*non_blocking=*/true);
    }
  }
  if (on_side) {
    on_copy.reset();
    wait_stream(*compute, streams_->to_device);
  }
  unsharded_ = true;
}

torch::ScalarType ShardedUnit::compute_dtype() const { return param_dtype_.value_or(dtype_); }

torch::Tensor ShardedUnit::gather_full_precision(const Kind& kind) {
  wait_for_update();
  auto values = torch::empty({kind.layout.padded_numel}, kind.full.options().dtype(dtype_));
  auto input = kind.shard.to(values.device(), dtype_);
  if (group_) {
    group_->_allgather_base(values, input)->wait();
  } else {
    values.copy_(input);
  }
  return values;
}

std::vector<torch::Tensor> ShardedUnit::full_precision_parameters() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out(params_.size());
  for (const auto& kind : kinds_) {
    const auto values = gather_full_precision(kind);
    for (size_t i = 0; i < kind.members.size(); ++i) {
      const auto& fp = kind.layout.params[i];
      out[kind.members[i]] = values.narrow(0, fp.offset, fp.numel).view(fp.shape);
    }
  }
  return out;
}

// Gives the parameters of `kind` the data `data[i]` (same shapes), keeping
// each one's gradient accumulator: FullyShardedModel's hooks sit on it,
// and data of another dtype would drop it.
void ShardedUnit::set_parameter_data(Kind& kind, const std::vector<torch::Tensor>& data) {
  for (size_t i = 0; i < kind.members.size(); ++i) {
    auto& p = params_[kind.members[i]];
    std::shared_ptr<torch::autograd::Node> accumulator;
    if (p.requires_grad()) accumulator = torch::autograd::impl::grad_accumulator(p);
    replace_tensor_data(p, data[i]);
    if (accumulator) {
      auto* meta = torch::autograd::impl::get_autograd_meta(p);
      std::lock_guard<std::mutex> lock(meta->mutex_);
      meta->grad_accumulator_ = accumulator;
    }
  }
}

void ShardedUnit::unshard_for_write() {
  if (!casts()) return unshard();
  if (unsharded_) reshard();
  torch::NoGradGuard no_grad;
  for (auto& kind : kinds_) {
    kind.written = gather_full_precision(kind);
    std::vector<torch::Tensor> views;
    kind.gathered_views.clear();
    for (size_t i = 0; i < kind.members.size(); ++i) {
      const auto& fp = kind.layout.params[i];
      // The views of the (freed) gathered buffer, put back by reshard().
      kind.gathered_views.push_back(params_[kind.members[i]].variable_data());
      views.push_back(kind.written.narrow(0, fp.offset, fp.numel).view(fp.shape));
    }
    set_parameter_data(kind, views);
  }
  unsharded_ = true;
}

torch::Tensor ShardedUnit::gather_input(const Kind& kind) const {
  if (kind.device_copy.defined()) return kind.device_copy;
  if (kind.host_copy.defined()) return kind.host_copy;
  return kind.shard.to(kind.full.scalar_type());  // the shard itself when the dtypes agree
}

void ShardedUnit::reshard_keeping_slice(c10::intrusive_ptr<c10d::ProcessGroup> ranks) {
  ACCEL_CHECK_ARG(ranks, "ShardedUnit::reshard_keeping_slice: unit '", path_, "': the group is null");
  if (!unsharded_) return;
  for (const auto& kind : kinds_)
    if (kind.written.defined()) return reshard();
  torch::NoGradGuard no_grad;
  const int64_t parts = ranks->getSize(), place = ranks->getRank();
  std::vector<torch::Tensor> kept;
  for (const auto& kind : kinds_) {
    ACCEL_CHECK_ARG(kind.full.numel() % parts == 0, "ShardedUnit::reshard_keeping_slice: unit '", path_, "' holds ",
                    kind.full.numel(), " elements, not a multiple of the ", parts, " ranks keeping its slices");
    const int64_t slice = kind.full.numel() / parts;
    kept.push_back(kind.full.narrow(0, place * slice, slice).clone());
  }
  reshard();
  for (size_t i = 0; i < kinds_.size(); ++i) kinds_[i].kept = std::move(kept[i]);
  kept_group_ = std::move(ranks);
}

int64_t ShardedUnit::kept_slice_bytes() const {
  int64_t bytes = 0;
  for (const auto& kind : kinds_)
    if (kind.kept.defined()) bytes += kind.kept.nbytes();
  return bytes;
}

void ShardedUnit::reshard() {
  kept_group_.reset();
  for (auto& kind : kinds_) kind.kept = torch::Tensor();
  if (!unsharded_) return;
  for (auto& kind : kinds_) {
    if (kind.written.defined()) {  // unshard_for_write: the parameters view the gathered buffer again
      set_parameter_data(kind, kind.gathered_views);
      kind.gathered_views.clear();
      kind.written = torch::Tensor();
      continue;
    }
    // Allocated on the copy stream, read on the compute stream: the block
    // is reused only once the compute stream is past this point.
    if (gathers_on_copy_stream()) record_use(kind.full, current_stream(kind.full.device()));
    free_storage(kind.full, kind.freed.get());
  }
  unsharded_ = false;
}

ShardedUnit::~ShardedUnit() {
  // Views of the buffers may outlive the unit (autograd's saved tensors):
  // they must not point at addresses the guard gives back.
  for (auto& kind : kinds_)
    if (!unsharded_ && kind.freed) free_storage(kind.full);
}

void ShardedUnit::keep_written_shard() {
  ACCEL_CHECK_STATE(unsharded_, "ShardedUnit::keep_written_shard: unit '", path_, "' is not gathered");
  torch::NoGradGuard no_grad;
  for (auto& kind : kinds_) {
    const int64_t slice = kind.shard.numel();
    const auto mine = (kind.written.defined() ? kind.written : kind.full).narrow(0, rank() * slice, slice);
    kind.shard.copy_(mine);
    if (kind.host_copy.defined() && !kind.host_copy.is_same(kind.shard)) kind.host_copy.copy_(mine);
    if (kind.device_copy.defined()) kind.device_copy.copy_(mine);
  }
  write_back();
}

void ShardedUnit::reduce_gradients() {
  if (num_trainable_ == 0) return;
  wait_for_update();
  torch::NoGradGuard no_grad;
  auto& kind = kinds_.front();
  // Reduced on the device, in reduce_dtype, else the shard's dtype (fp32 for bf16 gradients).
  auto flat = torch::zeros({kind.layout.padded_numel},
                           kind.full.options().dtype(reduce_dtype_.value_or(kind.grad_shard.scalar_type())));
  for (size_t i = 0; i < kind.members.size(); ++i) {
    auto& p = params_[kind.members[i]];
    if (!p.grad().defined()) continue;
    const auto& fp = kind.layout.params[i];
    flat.narrow(0, fp.offset, fp.numel).copy_(p.grad().reshape({-1}));
    p.mutable_grad().reset();
  }
  torch::Tensor mine = flat;
  if (group_) {
    mine = torch::empty({kind.grad_shard.numel()}, flat.options());
    group_->_reduce_scatter_base(mine, flat)->wait();
  }
  int ranks = world_size();
  if (replicas_) {
    std::vector<torch::Tensor> across{mine};
    replicas_->allreduce(across)->wait();
    ranks *= replicas_->getSize();
  }
  if (ranks > 1) mine.div_(ranks);
  if (grad_zero_) {
    if (placement_.host_masters) reduced_sq_ = mine.to(kind.grad_shard.scalar_type()).square().sum();
    copy_to_grad_shard(kind, mine);
    grad_zero_ = false;
  } else {
    reduced_sq_ = torch::Tensor();  // a sum of reductions: its norm is not theirs
    // The last copy into the gradient shard may still be on its way.
    if (streams_ && mine.is_cuda()) streams_->to_host.synchronize();
    const auto here = mine.to(kind.grad_shard.device());
    apply_grad_scale();  // a clipping factor still deferred applies to what is there
    kind.grad_shard.add_(here);
  }
}

void ShardedUnit::copy_to_grad_shard(Kind& kind, const torch::Tensor& reduced) {
  // Offloaded: asynchronous into page-locked memory (the optimizer waits
  // for the device before reading it), on the device-to-host stream when
  // there is one, so that the next unit's backward runs meanwhile.
  if (!streams_ || !reduced.is_cuda()) {
    kind.grad_shard.copy_(reduced, /*non_blocking=*/true);
    return;
  }
  wait_stream(streams_->to_host, current_stream(reduced.device()));
  {
    c10::StreamGuard on_copy(streams_->to_host);
    kind.grad_shard.copy_(reduced, /*non_blocking=*/true);
  }
  record_use(reduced, streams_->to_host);
}

void ShardedUnit::zero_grad() {
  grad_zero_ = true;
  reduced_sq_ = torch::Tensor();
  grad_scale_ = 1.f;
  for (auto& p : params_) p.mutable_grad().reset();
}

void ShardedUnit::gradients_to_pieces() {
  if (num_trainable_ == 0) return;
  wait_for_update();
  if (grad_zero_) {  // no backward since zero_grad(): the step sees zeros
    kinds_.front().grad_shard.zero_();
    grad_zero_ = false;
  }
  piece_grad_versions_.assign(params_.size(), -1);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    pieces_[i].mutable_grad() = piece_grad(i);
    piece_grad_versions_[i] = static_cast<int64_t>(pieces_[i].grad()._version());
  }
}

torch::Tensor ShardedUnit::grad_sq_norm() const {
  if (!reduced_sq_.defined() || grad_zero_) return {};
  // Anything that changed the gradients in place since they were reduced
  // (GradScaler's unscale, a user's mul_) bumped their version counters.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    const auto& g = pieces_[i].grad();
    if (i >= piece_grad_versions_.size() || !g.defined() ||
        static_cast<int64_t>(g._version()) != piece_grad_versions_[i])
      return {};
  }
  return reduced_sq_ * (static_cast<double>(grad_scale_) * grad_scale_);
}

void ShardedUnit::apply_grad_scale() {
  if (grad_scale_ == 1.f || num_trainable_ == 0) return;
  torch::NoGradGuard no_grad;
  kinds_.front().grad_shard.mul_(grad_scale_);
  grad_scale_ = 1.f;
}

torch::Tensor ShardedUnit::piece_grad(size_t i) const {
  const auto [k, begin] = piece_place_.at(i);
  const auto& kind = kinds_.at(k);
  if (!kind.grad_shard.defined()) return {};
  // The same memory as the shard's range, but not an autograd view of it:
  // LibTorch's zero_grad() detaches gradients in place, which views refuse.
  torch::NoGradGuard no_grad;
  auto grad = torch::empty({0}, kind.grad_shard.options());
  grad.set_(kind.grad_shard.storage(), kind.grad_shard.storage_offset() + begin, {pieces_[i].numel()}, {1});
  return grad;
}

torch::Tensor ShardedUnit::piece_copy(size_t i) const {
  const auto [k, begin] = piece_place_.at(i);
  const auto& kind = kinds_.at(k);
  if (!kind.host_copy.defined() || kind.host_copy.is_same(kind.shard)) return {};
  return kind.host_copy.narrow(0, begin, pieces_.at(i).numel());
}

void ShardedUnit::shards_updated(bool copies_written) {
  if (pending_.valid()) return;  // refreshed when the update is waited for
  refresh_copies(copies_written, /*frozen_too=*/false);
}

void ShardedUnit::set_pending_update(std::shared_future<void> done, bool copies_written) {
  wait_for_update();
  pending_ = std::move(done);
  pending_copies_written_ = copies_written;
}

void ShardedUnit::wait_for_update() {
  if (!pending_.valid()) return;
  const auto done = std::move(pending_);
  pending_ = {};
  done.get();
  refresh_copies(pending_copies_written_, /*frozen_too=*/false);
}

void ShardedUnit::write_piece(size_t i, const torch::Tensor& values) {
  ACCEL_CHECK_STATE(!unsharded_, "ShardedUnit::write_piece: unit '", path_, "' is gathered; reshard it first");
  wait_for_update();
  ACCEL_CHECK_ARG(values.numel() == pieces_.at(i).numel(), "parameter '", names_.at(i), "': ", values.numel(),
                  " values for a piece of ", pieces_.at(i).numel());
  torch::NoGradGuard no_grad;
  pieces_[i].copy_(values.reshape({-1}));
}

void ShardedUnit::pieces_written() { refresh_copies(/*copies_written=*/false, /*frozen_too=*/true); }

void ShardedUnit::refresh_copies(bool copies_written, bool frozen_too) {
  torch::NoGradGuard no_grad;
  for (auto& kind : kinds_) {
    if (!kind.host_copy.defined()) continue;                  // not offloaded
    if (!kind.grad_shard.defined() && !frozen_too) continue;  // frozen: no step changed it
    if (!copies_written && !kind.host_copy.is_same(kind.shard)) kind.host_copy.copy_(kind.shard);
    if (kind.device_copy.defined()) kind.device_copy.copy_(kind.host_copy, /*non_blocking=*/true);
  }
  write_back();  // the update is in the file's pages: start them for the drive
}

std::filesystem::path ShardedUnit::file_path() const { return file_ ? file_->path() : std::filesystem::path(); }

void ShardedUnit::read_ahead() const {
  if (file_) file_->prefetch();
}

void ShardedUnit::write_back() const {
  if (file_) file_->write_back();
}

int64_t ShardedUnit::shard_bytes() const {
  int64_t bytes = 0;
  for (const auto& kind : kinds_) {
    if (!placement_.host_masters) {
      bytes += kind.shard.nbytes();
      if (kind.grad_shard.defined()) bytes += kind.grad_shard.nbytes();
    }
    if (kind.device_copy.defined()) bytes += kind.device_copy.nbytes();
  }
  return bytes;
}

int64_t ShardedUnit::host_bytes() const {
  int64_t bytes = 0;
  for (const auto& kind : kinds_) {
    if (!placement_.host_masters) continue;
    if (kind.grad_shard.defined()) bytes += kind.grad_shard.nbytes();
    if (file_) continue;  // the shard and its copy are the file's
    bytes += kind.shard.nbytes();
    if (!kind.host_copy.is_same(kind.shard)) bytes += kind.host_copy.nbytes();
  }
  return bytes;
}

int64_t ShardedUnit::file_bytes() const {
  int64_t bytes = 0;
  if (!file_) return bytes;
  for (const auto& kind : kinds_) {
    bytes += kind.shard.nbytes();
    if (!kind.host_copy.is_same(kind.shard)) bytes += kind.host_copy.nbytes();
  }
  return bytes;
}

int64_t ShardedUnit::unsharded_bytes() const {
  int64_t bytes = 0;
  for (const auto& kind : kinds_) bytes += kind.full.numel() * kind.full.element_size();
  return bytes;
}

}  // namespace accel::fsdp
