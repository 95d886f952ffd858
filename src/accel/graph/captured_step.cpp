#include "accel/graph/captured_step.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "accel/util/check.h"
#include "accel/util/format.h"

#ifdef ACCEL_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace accel {

#ifdef ACCEL_WITH_CUDA
struct CapturedStep::Graph {
  explicit Graph(c10::DeviceIndex device) : stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device)) {}
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream stream;  // warm-up and capture run here, not on the default stream
  std::vector<torch::Tensor> inputs, outputs;
  bool recorded = false;
};
#else
struct CapturedStep::Graph {};
#endif

CapturedStep::CapturedStep(Function fn, std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                           std::shared_ptr<GradientState> gradient_state, bool capture, CaptureOptions options)
    : fn_(std::move(fn)),
      optimizers_(std::move(optimizers)),
      gradient_state_(std::move(gradient_state)),
      capture_(capture),
      options_(options) {
  ACCEL_CHECK_ARG(fn_, "CapturedStep: the step function is empty");
  ACCEL_CHECK_ARG(gradient_state_, "CapturedStep: the gradient state is null");
  ACCEL_CHECK_ARG(options_.warmup_steps() >= 1, "CapturedStep: warmup_steps is ", options_.warmup_steps(),
                  ", expected >= 1 (the optimizer state must exist before capture)");
#ifndef ACCEL_WITH_CUDA
  ACCEL_CHECK_ARG(!capture_, "CapturedStep: CUDA-graph capture was asked for, but accel was built without CUDA");
#endif
}

CapturedStep::~CapturedStep() = default;
CapturedStep::CapturedStep(CapturedStep&&) noexcept = default;
CapturedStep& CapturedStep::operator=(CapturedStep&&) noexcept = default;

bool CapturedStep::captured() const {
#ifdef ACCEL_WITH_CUDA
  return graph_ && graph_->recorded;
#else
  return false;
#endif
}

std::vector<torch::Tensor> CapturedStep::operator()(const std::vector<torch::Tensor>& inputs) {
  gradient_state_->advance();
  auto out = capture_ ? run_captured(inputs) : run_eager(inputs);
  ++calls_;
  return out;
}

std::vector<torch::Tensor> CapturedStep::run_eager(const std::vector<torch::Tensor>& inputs) { return fn_(inputs); }

#ifdef ACCEL_WITH_CUDA
namespace {

// `waiter` runs what it is given next only after what `first` holds now.
void order_after(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& first) {
  at::cuda::CUDAEvent event;
  event.record(first);
  event.block(waiter);
}

// A capture that failed part-way leaves the device's default generator
// marked as capturing, so any later random op would fail. Give it a clean
// copy of its own state (same seed and offset).
void release_generator(c10::DeviceIndex device) {
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto* impl = gen.get<at::CUDAGeneratorImpl>();
  impl->graphsafe_set_state(impl->clone()->graphsafe_get_state());
}

void check_same(const std::vector<torch::Tensor>& expected, const std::vector<torch::Tensor>& got) {
  ACCEL_CHECK_ARG(expected.size() == got.size(), "CapturedStep: called with ", got.size(), " inputs, expected the ",
                  expected.size(), " of the first call (a graph replays fixed buffers)");
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& e = expected[i];
    const auto& g = got[i];
    ACCEL_CHECK_ARG(g.defined() && g.sizes() == e.sizes() && g.scalar_type() == e.scalar_type(), "CapturedStep: input ",
                    i, " is ", g.defined() ? describe_tensor(g.sizes(), g.scalar_type()) : std::string("undefined"),
                    ", expected ", describe_tensor(e.sizes(), e.scalar_type()),
                    " as in the first call (a graph replays fixed shapes: pad the last batch or drop it)");
  }
}

}  // namespace

std::vector<torch::Tensor> CapturedStep::run_captured(const std::vector<torch::Tensor>& inputs) {
  if (!graph_) {
    std::string why;
    for (auto& opt : optimizers_)
      if (!opt->steps_on_device(&why))
        fail<std::invalid_argument>(
            "CapturedStep: the step cannot be captured in a CUDA graph: an optimizer cannot step without the host: ",
            why);
    torch::Device device(torch::kCUDA, 0);
    for (const auto& t : inputs)
      if (t.defined() && t.is_cuda()) device = t.device();
    c10::cuda::CUDAGuard guard(device);
    graph_ = std::make_unique<Graph>(device.index());
    for (const auto& t : inputs) graph_->inputs.push_back(t.to(device, /*non_blocking=*/false, /*copy=*/true));
    for (auto& opt : optimizers_) opt->prepare_capture();
  } else {
    check_same(graph_->inputs, inputs);
    for (size_t i = 0; i < inputs.size(); ++i) graph_->inputs[i].copy_(inputs[i], /*non_blocking=*/true);
  }
  for (auto& opt : optimizers_) opt->before_replay();

  auto& g = *graph_;
  if (g.recorded) {
    g.graph.replay();
    for (auto& opt : optimizers_) opt->after_replay();
    return g.outputs;
  }

  // Warm-up and capture run on the side stream, ordered after what the
  // default stream has queued (the input copies, the lr) and before what
  // it queues next.
  const auto current = c10::cuda::getCurrentCUDAStream(g.stream.device_index());
  order_after(g.stream, current);
  std::vector<torch::Tensor> out;
  {
    c10::cuda::CUDAStreamGuard on_side(g.stream);
    if (calls_ < options_.warmup_steps()) {
      out = fn_(g.inputs);
    } else {
      g.graph.capture_begin();
      try {
        out = fn_(g.inputs);
      } catch (const std::exception& e) {
        try {
          g.graph.capture_end();
        } catch (...) {
        }
        const auto device = g.stream.device_index();
        graph_.reset();
        release_generator(device);
        fail<std::runtime_error>(
            "CapturedStep: the step cannot be captured in a CUDA graph: ", e.what(),
            "\n(a captured step must not wait for the GPU or read values back: no .item(), no printing tensors, "
            "no host decisions on device values; it must not change shapes or devices)");
      }
      g.graph.capture_end();
      g.outputs = out;
      g.recorded = true;
      // Capture records the work without running it: run it once now. The
      // host-side effects (step counts) already happened while recording.
      g.graph.replay();
    }
  }
  order_after(current, g.stream);
  return out;
}
#else
std::vector<torch::Tensor> CapturedStep::run_captured(const std::vector<torch::Tensor>& inputs) {
  return run_eager(inputs);
}
#endif

}  // namespace accel
