#include "accel/parallel/zero/offloaded_update.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <stdexcept>

#include "accel/util/check.h"

namespace accel::zero {

namespace {

bool is_adamw(const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::AdamW*>(&o) != nullptr; }

// Each group's hyper-parameters now (a scheduler may have changed the lr).
std::vector<CpuAdamOptions> hyper_parameters(const torch::optim::Optimizer& optimizer, bool adamw) {
  std::vector<CpuAdamOptions> out;
  for (const auto& group : optimizer.param_groups()) {
    if (adamw) {
      out.push_back(CpuAdamOptions::from(static_cast<const torch::optim::AdamWOptions&>(group.options())));
    } else {
      out.push_back(CpuAdamOptions::from(static_cast<const torch::optim::AdamOptions&>(group.options())));
    }
  }
  return out;
}

}  // namespace

bool OffloadedUpdate::supports(const torch::optim::Optimizer& optimizer) {
  return is_adamw(optimizer) || dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr;
}

OffloadedUpdate::OffloadedUpdate(const torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> masters,
                                 const OffloadOptions& options, int rank, torch::TensorOptions model,
                                 std::vector<torch::Tensor> destinations)
    : masters_(std::move(masters)), adamw_(is_adamw(optimizer)), device_(model.device()) {
  ACCEL_CHECK_ARG(
      supports(optimizer),
      "ZeRO-Offload steps Adam and AdamW on the CPU (accel's CPU Adam); this optimizer is neither (use "
      "torch::optim::Adam/AdamW, or offload_optimizer.device cpu, which runs other element-wise optimizers' own "
      "step on the host)");
  const auto hyper = hyper_parameters(optimizer, adamw_);
  const bool cuda = device_.is_cuda();
  const auto dtype = model.dtype().toScalarType();
  const bool copy = dtype == torch::kBFloat16 || dtype == torch::kHalf;
  for (size_t g = 0; g < masters_.size(); ++g) {
    auto adam = OffloadedAdamOptions::from(options);
    if (options.device() == OffloadDevice::nvme)
      adam.nvme_path(options.nvme_path() / ("rank" + std::to_string(rank)) / ("group" + std::to_string(g)));
    const int64_t n = masters_[g].numel();
    adams_.push_back(std::make_unique<OffloadedAdam>(n, hyper.at(g), adam));
    auto host = torch::TensorOptions().dtype(dtype);
    if (cuda && options.pin_memory()) host = host.pinned_memory(true);
    host_copies_.push_back(copy ? torch::empty({n}, host) : torch::Tensor());
    if (g < destinations.size()) {
      const auto& d = destinations[g];
      ACCEL_CHECK_ARG(d.numel() == n && d.scalar_type() == dtype && d.device() == device_ && d.is_contiguous(),
                      "OffloadedUpdate: destination ", g, " is not a contiguous ", c10::toString(dtype), " tensor of ",
                      n, " elements on ", device_.str());
      model_values_.push_back(d);
    } else if (cuda) {
      model_values_.push_back(torch::empty({n}, torch::TensorOptions().dtype(dtype).device(device_)));
    } else {
      model_values_.push_back(copy ? host_copies_.back() : masters_[g]);
    }
  }
  if (cuda) side_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index()).unwrap();
}

OffloadedUpdate::~OffloadedUpdate() {
  if (worker_.joinable()) worker_.join();
}

void OffloadedUpdate::start(const torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> grads,
                            bool background) {
  wait();
  ACCEL_CHECK_ARG(grads.size() == masters_.size(), "OffloadedUpdate::start: ", grads.size(), " gradient slices for ",
                  masters_.size(), " groups");
  auto hyper = hyper_parameters(optimizer, adamw_);
  if (side_stream_) {
    // The staging slices are overwritten only after what the device has
    // queued so far (the last copy out of them) is done.
    at::cuda::CUDAEvent queued;
    queued.record(c10::cuda::getCurrentCUDAStream(device_.index()));
    queued.block(c10::cuda::CUDAStream(*side_stream_));
  }
  if (!background) {
    run(hyper, grads);
    return;
  }
  worker_ = std::thread([this, hyper = std::move(hyper), grads = std::move(grads)] {
    try {
      run(hyper, grads);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

void OffloadedUpdate::run(const std::vector<CpuAdamOptions>& hyper, const std::vector<torch::Tensor>& grads) {
  const auto begin = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  std::optional<c10::cuda::CUDAGuard> device;
  std::optional<c10::cuda::CUDAStreamGuard> stream;
  if (side_stream_) {
    device.emplace(device_.index());
    stream.emplace(c10::cuda::CUDAStream(*side_stream_));
  }
  for (size_t g = 0; g < masters_.size(); ++g) {
    auto& adam = *adams_[g];
    const bool amsgrad = adam.adam_options().amsgrad();
    adam.adam_options() = hyper[g];
    adam.adam_options().amsgrad(amsgrad);  // fixed when the state was made
    const auto& source = host_copies_[g].defined() ? host_copies_[g] : masters_[g];
    const auto& grad = grads[g];
    OffloadedAdam::ChunkDone send;
    if (side_stream_)
      send = [&](int64_t b, int64_t e) {
        model_values_[g].narrow(0, b, e - b).copy_(source.narrow(0, b, e - b), /*non_blocking=*/true);
      };
    adam.step(masters_[g], grad, host_copies_[g], send);
  }
  if (side_stream_) stream->current_stream().synchronize();
  last_update_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
}

void OffloadedUpdate::wait() {
  if (worker_.joinable()) worker_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void OffloadedUpdate::load_state(size_t g, const std::map<std::string, torch::Tensor>& state, int64_t step_count) {
  wait();
  adams_.at(g)->load_state(state, step_count);
}

int64_t OffloadedUpdate::host_state_bytes() const {
  int64_t n = 0;
  for (const auto& a : adams_) n += a->host_state_bytes();
  return n;
}

}  // namespace accel::zero
