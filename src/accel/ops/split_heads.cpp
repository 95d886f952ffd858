#include "accel/ops/split_heads.h"

#include <torch/autograd.h>

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// [B, T, 3, H, D] viewed as the three [B, H, T, D] heads.
std::vector<torch::Tensor> heads_of(const torch::Tensor& qkv5) { return qkv5.permute({2, 0, 3, 1, 4}).unbind(0); }

struct SplitQkvHeads : torch::autograd::Function<SplitQkvHeads> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& qkv, int64_t head_size) {
    const int64_t B = qkv.size(0), T = qkv.size(1), H = qkv.size(2) / (3 * head_size);
    ctx->saved_data["shape"] = std::vector<int64_t>{B, T, 3, H, head_size};
    return heads_of(qkv.view({B, T, 3, H, head_size}));
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    torch::Tensor like;
    for (const auto& g : grads)
      if (g.defined()) like = g;
    auto grad = torch::empty(shape, like.options());
    auto slots = heads_of(grad);
    for (size_t i = 0; i < slots.size(); ++i) {
      if (grads[i].defined())
        slots[i].copy_(grads[i]);
      else
        slots[i].zero_();
    }
    return {grad.view({shape[0], shape[1], shape[2] * shape[3] * shape[4]}), torch::Tensor()};
  }
};

}  // namespace

std::vector<torch::Tensor> split_qkv_heads(const torch::Tensor& qkv, int64_t head_size) {
  ACCEL_CHECK_ARG(qkv.defined() && qkv.dim() == 3, "split_qkv_heads: qkv is ",
                  qkv.defined() ? describe_tensor(qkv.sizes(), qkv.scalar_type()) : std::string("undefined"),
                  ", expected [batch, seq, 3 * heads * head_size]");
  ACCEL_CHECK_ARG(head_size >= 1 && qkv.size(2) % (3 * head_size) == 0 && qkv.size(2) > 0, "split_qkv_heads: qkv is ",
                  describe_tensor(qkv.sizes(), qkv.scalar_type()), " and head_size ", head_size,
                  ", expected a last size that is a positive multiple of 3 * head_size");
  if (!qkv.requires_grad() || !torch::GradMode::is_enabled()) {
    const int64_t H = qkv.size(2) / (3 * head_size);
    return heads_of(qkv.view({qkv.size(0), qkv.size(1), 3, H, head_size}));
  }
  return SplitQkvHeads::apply(qkv, head_size);
}

}  // namespace accel
