#include "accel/big_model/empty_init.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <unordered_set>

#include "accel/util/check.h"

namespace accel {

namespace {

constexpr auto kKey = c10::DispatchKey::DeferredInit;

// The innermost scope's device on this thread.
thread_local std::optional<c10::Device> current_device;

bool mentions_tensor(const c10::TypePtr& type) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType: return true;
    case c10::TypeKind::OptionalType: return mentions_tensor(type->castRaw<c10::OptionalType>()->getElementType());
    case c10::TypeKind::ListType: return mentions_tensor(type->castRaw<c10::ListType>()->getElementType());
    default: return false;
  }
}

// Where a factory operator takes its device, or -1 for every other operator
// (one taking a tensor follows that tensor, as `empty_like` and `to` do).
int factory_device_argument(const c10::FunctionSchema& schema) {
  int device = -1;
  const auto& args = schema.arguments();
  for (size_t i = 0; i < args.size(); ++i) {
    if (mentions_tensor(args[i].type())) return -1;
    if (args[i].name() == "device") device = static_cast<int>(i);
  }
  return device;
}

void redirect_factories(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  if (current_device) {
    const int device = factory_device_argument(op.schema());
    if (device >= 0) {
      auto& value = (*stack)[stack->size() - op.schema().arguments().size() + device];
      if (value.isNone()) value = c10::IValue(*current_device);
    }
  }
  op.redispatchBoxed(keys & c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, kKey), stack);
}

// Registered on first use (a static initialiser in a static library is
// dropped when nothing else of its file is linked).
void register_fallback() {
  static std::once_flag once;
  static std::unique_ptr<torch::Library> library;
  std::call_once(once, [] {
    library = std::make_unique<torch::Library>(torch::Library::IMPL, "_", kKey, __FILE__, __LINE__);
    library->fallback(torch::CppFunction::makeFromBoxedFunction<&redirect_factories>());
  });
}

}  // namespace

InitOnDevice::InitOnDevice(c10::Device device) : previous_(current_device) {
  register_fallback();
  current_device = device;
  c10::impl::tls_set_dispatch_key_included(kKey, true);
}

InitOnDevice::~InitOnDevice() {
  current_device = previous_;
  if (!previous_) c10::impl::tls_set_dispatch_key_included(kKey, false);
}

std::optional<c10::Device> init_device() { return current_device; }

void replace_tensor_data(const torch::Tensor& target, const torch::Tensor& value) {
  ACCEL_CHECK_ARG(target.defined() && value.defined(), "replace_tensor_data: an undefined tensor");
  ACCEL_CHECK_ARG(target.sizes() == value.sizes(), "replace_tensor_data: shape ", value.sizes(),
                  " for a tensor of shape ", target.sizes());
  ACCEL_CHECK_ARG(!target.requires_grad() || value.is_floating_point() || value.is_complex(),
                  "replace_tensor_data: a tensor that requires grad cannot hold ", value.scalar_type(), " data");
  // What Tensor::set_data does, without its check that both are on the same
  // kind of dense device (which refuses the meta device): the gradient
  // accumulator, made for the old device and dtype, is dropped.
  if (auto* meta = torch::autograd::impl::get_autograd_meta(target)) {
    std::lock_guard<std::mutex> lock(meta->mutex_);
    meta->grad_accumulator_.reset();
  }
  target.unsafeGetTensorImpl()->shallow_copy_from(value.getIntrusivePtr());
}

void materialize(torch::nn::Module& model, c10::Device device) {
  std::unordered_set<const c10::TensorImpl*> done;
  auto one = [&](const torch::Tensor& t) {
    if (!t.defined() || !t.is_meta() || !done.insert(t.unsafeGetTensorImpl()).second) return;
    replace_tensor_data(t, torch::empty(t.sizes(), t.options().device(device)));
  };
  for (const auto& p : model.parameters()) one(p);
  for (const auto& b : model.buffers()) one(b);
}

}  // namespace accel
