#include "accel/optim/offloaded_adam.h"

#include <stdexcept>

#include <torch/cuda.h>

#include "accel/util/check.h"

namespace accel {
namespace {

constexpr int kBuffers = 3;  // chunk k-2 being written, k-1 stepped, k read

torch::Tensor host_zeros(int64_t n, bool pin) {
  auto options = torch::TensorOptions().dtype(torch::kFloat);
  if (pin && torch::cuda::is_available()) options = options.pinned_memory(true);
  return torch::zeros({n}, options);
}

void wait_all(std::vector<IoHandle>& handles) {
  for (auto& h : handles) h.wait();
  handles.clear();
}

// Waits for every handle, even after a failure, and rethrows the first error.
void wait_all_then_throw(std::vector<std::vector<IoHandle>>& groups) {
  std::exception_ptr first;
  for (auto& g : groups)
    for (auto& h : g) try {
        h.wait();
      } catch (...) {
        if (!first) first = std::current_exception();
      }
  groups.clear();
  if (first) std::rethrow_exception(first);
}

// [begin, begin + len) of every defined tensor of the slice.
CpuAdamSlice piece(const CpuAdamSlice& s, int64_t begin, int64_t len) {
  auto cut = [&](const torch::Tensor& t) { return t.defined() && t.dim() == 1 ? t.narrow(0, begin, len) : t; };
  return {cut(s.param), cut(s.grad), cut(s.exp_avg), cut(s.exp_avg_sq), cut(s.max_exp_avg_sq), cut(s.param_copy)};
}

}  // namespace

OffloadedAdamOptions OffloadedAdamOptions::from(const OffloadOptions& o) {
  return OffloadedAdamOptions()
      .device(o.device())
      .nvme_path(o.nvme_path())
      .pin_memory(o.pin_memory())
      .io_threads(o.io_threads());
}

OffloadedAdam::OffloadedAdam(int64_t numel, CpuAdamOptions adam, OffloadedAdamOptions options)
    : numel_(numel), adam_(std::move(adam)), options_(std::move(options)), amsgrad_(adam_.amsgrad()) {
  adam_.check();
  ACCEL_CHECK_ARG(numel_ >= 0, "OffloadedAdam: numel = ", numel_, ", expected >= 0");
  ACCEL_CHECK_ARG(options_.chunk_elements() >= 1, "OffloadedAdamOptions: chunk_elements = ", options_.chunk_elements(),
                  ", expected >= 1");
  switch (options_.device()) {
    case OffloadDevice::none: fail<std::invalid_argument>("OffloadedAdamOptions: device none; expected cpu or nvme");
    case OffloadDevice::cpu:
      for (const auto& f : fields()) host_[f] = host_zeros(numel_, options_.pin_memory());
      break;
    case OffloadDevice::nvme: {
      ACCEL_CHECK_ARG(!options_.nvme_path().empty(),
                      "OffloadedAdamOptions: device nvme needs nvme_path (the folder for the swap files)");
      store_ = std::make_unique<NvmeStore>(
          NvmeStoreOptions(options_.nvme_path()).io_threads(options_.io_threads()).direct_io(options_.direct_io()));
      const int64_t len = std::min(numel_, options_.chunk_elements());
      buffers_.resize(kBuffers);
      for (auto& b : buffers_)
        for (const auto& f : fields()) b[f] = host_zeros(len, options_.pin_memory());
      break;
    }
  }
}

OffloadedAdam::~OffloadedAdam() = default;

void OffloadedAdam::check_whole(const torch::Tensor& param, const torch::Tensor& grad,
                                const torch::Tensor& param_copy) const {
  for (const auto* t : {&param, &grad, &param_copy})
    ACCEL_CHECK_ARG(!t->defined() || (t->numel() == numel_ && t->is_contiguous()),
                    "OffloadedAdam::step: param, grad and param_copy must be contiguous with ", numel_,
                    " elements; got one with ", t->numel());
}

std::vector<std::string> OffloadedAdam::fields() const {
  std::vector<std::string> f = {"exp_avg", "exp_avg_sq"};
  if (amsgrad_) f.push_back("max_exp_avg_sq");
  return f;
}

int64_t OffloadedAdam::chunks() const { return (numel_ + options_.chunk_elements() - 1) / options_.chunk_elements(); }

std::string OffloadedAdam::key(const std::string& field, int64_t chunk) const {
  return field + "." + std::to_string(chunk);
}

void OffloadedAdam::step(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& param_copy,
                         const ChunkDone& chunk_done) {
  ACCEL_CHECK_ARG(adam_.amsgrad() == amsgrad_, "OffloadedAdam: amsgrad cannot change after construction");
  adam_.check();
  ACCEL_CHECK_ARG(param.defined() && param.numel() == numel_, "OffloadedAdam::step: param has ",
                  param.defined() ? param.numel() : 0, " elements, expected ", numel_);
  if (options_.device() == OffloadDevice::nvme) {
    step_nvme(param, grad, param_copy, chunk_done);
    return;
  }
  CpuAdamSlice s{param, grad, host_.at("exp_avg"), host_.at("exp_avg_sq")};
  if (amsgrad_) s.max_exp_avg_sq = host_.at("max_exp_avg_sq");
  s.param_copy = param_copy;
  if (!chunk_done) {
    cpu_adam_step(adam_, step_ + 1, s);  // checks every tensor before changing any
    ++step_;
    return;
  }
  cpu_adam_step(adam_, step_ + 1, piece(s, 0, 0));  // checks every tensor before changing any
  check_whole(param, grad, param_copy);
  const int64_t c = options_.chunk_elements();
  for (int64_t begin = 0; begin < numel_; begin += c) {
    const int64_t len = std::min(c, numel_ - begin);
    cpu_adam_step(adam_, step_ + 1, piece(s, begin, len));
    chunk_done(begin, begin + len);
  }
  ++step_;
}

void OffloadedAdam::step_nvme(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& param_copy,
                              const ChunkDone& chunk_done) {
  // Check the whole tensors once (the chunks are views of them).
  cpu_adam_step(adam_, step_ + 1,
                {param.narrow(0, 0, 0), grad.narrow(0, 0, 0), torch::zeros({0}), torch::zeros({0}),
                 amsgrad_ ? torch::zeros({0}) : torch::Tensor(),
                 param_copy.defined() ? param_copy.narrow(0, 0, 0) : torch::Tensor()});
  check_whole(param, grad, param_copy);
  ACCEL_CHECK(!failed_, "OffloadedAdam: an earlier step failed part way, so the swap files in ",
              options_.nvme_path().string(), " no longer hold one state; load_state() to go on");
  const int64_t k_count = chunks(), c = options_.chunk_elements();
  const bool fresh = !paged_;
  const int64_t t = step_ + 1;
  auto length = [&](int64_t k) { return std::min(c, numel_ - k * c); };
  std::vector<std::vector<IoHandle>> reads(k_count), writes(kBuffers);
  auto issue_read = [&](int64_t k) {
    const int slot = static_cast<int>(k % kBuffers);
    wait_all(writes[slot]);  // the buffer's previous chunk is on disk
    for (const auto& f : fields()) {
      auto buf = buffers_[slot][f].narrow(0, 0, length(k));
      if (fresh)
        buf.zero_();
      else
        reads[k].push_back(store_->read(key(f, k), buf));
    }
  };
  try {
    if (k_count > 0) issue_read(0);
    for (int64_t k = 0; k < k_count; ++k) {
      if (k + 1 < k_count) issue_read(k + 1);
      wait_all(reads[k]);
      const int slot = static_cast<int>(k % kBuffers);
      const int64_t begin = k * c, len = length(k);
      auto& b = buffers_[slot];
      CpuAdamSlice s{param.narrow(0, begin, len), grad.narrow(0, begin, len), b.at("exp_avg").narrow(0, 0, len),
                     b.at("exp_avg_sq").narrow(0, 0, len)};
      if (amsgrad_) s.max_exp_avg_sq = b.at("max_exp_avg_sq").narrow(0, 0, len);
      if (param_copy.defined()) s.param_copy = param_copy.narrow(0, begin, len);
      cpu_adam_step(adam_, t, s);
      if (chunk_done) chunk_done(begin, begin + len);
      for (const auto& f : fields()) writes[slot].push_back(store_->write(key(f, k), b.at(f).narrow(0, 0, len)));
    }
  } catch (...) {
    // Leave no I/O running on the buffers; the step's error is the one to report.
    try {
      wait_all_then_throw(reads);
      wait_all_then_throw(writes);
    } catch (...) {
    }
    failed_ = true;  // the pages are no longer one consistent state
    throw;
  }
  wait_all_then_throw(writes);
  paged_ = true;
  step_ = t;
}

std::map<std::string, torch::Tensor> OffloadedAdam::state() const {
  std::map<std::string, torch::Tensor> out;
  if (options_.device() == OffloadDevice::cpu) {
    for (const auto& [f, t] : host_) out[f] = t.clone();
    return out;
  }
  std::vector<std::vector<IoHandle>> reads(1);
  const int64_t c = options_.chunk_elements();
  for (const auto& f : fields()) {
    out[f] = torch::zeros({numel_});
    if (!paged_) continue;
    for (int64_t k = 0; k < chunks(); ++k)
      reads[0].push_back(store_->read(key(f, k), out[f].narrow(0, k * c, std::min(c, numel_ - k * c))));
  }
  wait_all_then_throw(reads);
  return out;
}

void OffloadedAdam::load_state(const std::map<std::string, torch::Tensor>& state, int64_t step_count) {
  ACCEL_CHECK_ARG(step_count >= 0, "OffloadedAdam::load_state: step count ", step_count);
  for (const auto& f : fields()) {
    auto it = state.find(f);
    ACCEL_CHECK_ARG(it != state.end(), "OffloadedAdam::load_state: no '", f, "' tensor");
    ACCEL_CHECK_ARG(it->second.numel() == numel_, "OffloadedAdam::load_state: '", f, "' has ", it->second.numel(),
                    " elements, expected ", numel_);
  }
  if (options_.device() == OffloadDevice::cpu) {
    for (const auto& f : fields()) host_[f].copy_(state.at(f).reshape({-1}));
  } else {
    std::vector<std::vector<IoHandle>> writes(1);
    std::vector<torch::Tensor> sources;  // fp32, contiguous copies held until written
    const int64_t c = options_.chunk_elements();
    for (const auto& f : fields()) {
      sources.push_back(state.at(f).reshape({-1}).to(torch::kCPU, torch::kFloat).contiguous());
      for (int64_t k = 0; k < chunks(); ++k)
        writes[0].push_back(store_->write(key(f, k), sources.back().narrow(0, k * c, std::min(c, numel_ - k * c))));
    }
    paged_ = false;
    failed_ = true;
    wait_all_then_throw(writes);
    paged_ = true;
    failed_ = false;
  }
  step_ = step_count;
}

int64_t OffloadedAdam::host_state_bytes() const {
  int64_t bytes = 0;
  for (const auto& [f, t] : host_) bytes += static_cast<int64_t>(t.nbytes());
  for (const auto& b : buffers_)
    for (const auto& [f, t] : b) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

}  // namespace accel
