#include "accel/parallel/zero/flat_parameters.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel::zero {

FlatParameters::FlatParameters(const FlatLayout& layout, std::vector<std::vector<torch::Tensor>> params)
    : params_(std::move(params)) {
  ACCEL_CHECK_ARG(params_.size() == layout.groups.size(), "FlatParameters: ", params_.size(),
                  " groups of parameters for ", layout.groups.size(), " layout groups");
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < params_.size(); ++g) {
    const auto& group = layout.groups[g];
    auto& ps = params_[g];
    ACCEL_CHECK_ARG(ps.size() == group.params.size(), "FlatParameters: group ", g, " has ", ps.size(),
                    " parameters, its layout ", group.params.size());
    auto options = ps.empty() ? torch::TensorOptions().dtype(torch::kFloat)
                              : torch::TensorOptions().dtype(ps[0].scalar_type()).device(ps[0].device());
    for (size_t i = 0; i < ps.size(); ++i)
      ACCEL_CHECK_ARG(ps[i].scalar_type() == options.dtype().toScalarType() && ps[i].device() == options.device(),
                      "ZeRO: parameter '", group.params[i].name, "' is ", c10::toString(ps[i].scalar_type()), " on ",
                      ps[i].device().str(), ", the others of its param group are ",
                      c10::toString(options.dtype().toScalarType()), " on ", options.device().str(),
                      "; one dtype and device per param group");
    auto buffer = torch::zeros({group.padded_numel}, options);
    for (size_t i = 0; i < ps.size(); ++i) {
      const auto& fp = group.params[i];
      auto view = buffer.narrow(0, fp.offset, fp.numel).view(fp.shape);
      view.copy_(ps[i]);
      ps[i].set_data(view);
    }
    buffers_.push_back(std::move(buffer));
  }
}

}  // namespace accel::zero
