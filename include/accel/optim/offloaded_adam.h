#pragma once
// OffloadedAdam: Adam/AdamW over one flat fp32 slice (a rank's shard of the
// master weights) with the optimizer state off the device, ZeRO-Offload's
// optimizer: the update runs on the CPU (optim/cpu_adam.h) and the moments
// live either in host memory (cpu) or in swap files (nvme, optim/nvme_store.h).
//
// nvme: the slice is stepped chunk by chunk; chunk k's moments are read into
// one of three host buffers while chunk k-1 is stepped and chunk k-2's are
// written back, so that the disk and the update overlap. Only those three
// buffers are in host memory (3 x chunk_elements x 2 (3 under amsgrad)
// floats). The first step starts from zeros without reading. Every element
// is updated by the same arithmetic in both modes, so nvme equals cpu bit for
// bit.
//
// The master weights (param) stay where the caller keeps them, in host memory.
//
//   accel::OffloadedAdam opt(shard_numel, accel::CpuAdamOptions(1e-4),
//                            accel::OffloadedAdamOptions().device(accel::OffloadDevice::nvme)
//                                .nvme_path("/local_nvme/rank0"));
//   opt.step(master_shard, grad_shard, device_copy);   // each optimizer step
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/optim/cpu_adam.h"
#include "accel/optim/nvme_store.h"
#include "accel/parallel/sharding_options.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API OffloadedAdamOptions {
  /// cpu or nvme (none is refused: then the optimizer runs on the device).
  TORCH_ARG(OffloadDevice, device) = OffloadDevice::cpu;
  /// Folder of the swap files (nvme).
  TORCH_ARG(std::filesystem::path, nvme_path);
  TORCH_ARG(int, io_threads) = 4;
  /// Elements per paged chunk (nvme). 4 M: 16 MiB per state tensor per chunk. >= 1.
  TORCH_ARG(int64_t, chunk_elements) = 4 << 20;
  /// Page-locked host buffers (needs CUDA; ignored without it).
  TORCH_ARG(bool, pin_memory) = false;
  /// O_DIRECT swap I/O (see NvmeStoreOptions::direct_io).
  TORCH_ARG(bool, direct_io) = false;

 public:
  /// The offload part of ShardingOptions.
  static OffloadedAdamOptions from(const OffloadOptions& o);
};

class ACCEL_API OffloadedAdam {
 public:
  /// `numel`: the slice's length. Throws std::invalid_argument for bad
  /// options, std::runtime_error naming the folder when swap files cannot be
  /// written there.
  OffloadedAdam(int64_t numel, CpuAdamOptions adam, OffloadedAdamOptions options = {});
  ~OffloadedAdam();

  /// One step: param (fp32, numel, CPU) updated in place from grad (fp32 or
  /// bf16); param_copy (bf16/fp16, optional) receives the new values for the
  /// device. Errors name the tensor or the swap file.
  ///
  /// chunk_done (optional) is called with each [begin, end) range as soon as
  /// its new values are written, in order, chunk_elements at a time (cpu
  /// included), so that a caller can send them on while the next range is
  /// stepped.
  using ChunkDone = std::function<void(int64_t begin, int64_t end)>;
  void step(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& param_copy = {},
            const ChunkDone& chunk_done = {});

  /// The hyper-parameters of later steps (a scheduler's lr).
  CpuAdamOptions& adam_options() { return adam_; }
  const OffloadedAdamOptions& options() const { return options_; }
  int64_t numel() const { return numel_; }
  /// Steps taken (Adam's t).
  int64_t step_count() const { return step_; }

  /// The whole state ("exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]), fp32
  /// tensors of numel (read back from the swap files under nvme). Zeros
  /// before the first step.
  std::map<std::string, torch::Tensor> state() const;
  /// Replaces the state (as state() gives it) and the step count.
  void load_state(const std::map<std::string, torch::Tensor>& state, int64_t step_count);

  /// Bytes of optimizer state held in host memory now (cpu: all of it; nvme:
  /// the chunk buffers).
  int64_t host_state_bytes() const;

 private:
  std::vector<std::string> fields() const;
  int64_t chunks() const;
  std::string key(const std::string& field, int64_t chunk) const;
  void check_whole(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& param_copy) const;
  void step_nvme(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& param_copy,
                 const ChunkDone& chunk_done);

  int64_t numel_;
  CpuAdamOptions adam_;
  OffloadedAdamOptions options_;
  bool amsgrad_;  // fixed at construction: it decides the state's fields
  int64_t step_ = 0;
  bool paged_ = false;   // nvme: the swap files hold the current state
  bool failed_ = false;  // nvme: a step or load stopped part way
  // cpu: the whole state. nvme: three chunk buffers per field.
  std::map<std::string, torch::Tensor> host_;
  std::vector<std::map<std::string, torch::Tensor>> buffers_;
  std::unique_ptr<NvmeStore> store_;
};

}  // namespace accel
