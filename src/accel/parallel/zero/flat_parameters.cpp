#include "accel/parallel/zero/flat_parameters.h"

#include <stdexcept>

namespace accel::zero {

FlatParameters::FlatParameters(const FlatLayout& layout, std::vector<std::vector<torch::Tensor>> params)
    : params_(std::move(params)) {
  if (params_.size() != layout.groups.size())
    throw std::invalid_argument("FlatParameters: " + std::to_string(params_.size()) + " groups of parameters for " +
                                std::to_string(layout.groups.size()) + " layout groups");
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < params_.size(); ++g) {
    const auto& group = layout.groups[g];
    auto& ps = params_[g];
    if (ps.size() != group.params.size())
      throw std::invalid_argument("FlatParameters: group " + std::to_string(g) + " has " + std::to_string(ps.size()) +
                                  " parameters, its layout " + std::to_string(group.params.size()));
    auto options = ps.empty() ? torch::TensorOptions().dtype(torch::kFloat)
                              : torch::TensorOptions().dtype(ps[0].scalar_type()).device(ps[0].device());
    for (size_t i = 0; i < ps.size(); ++i)
      if (ps[i].scalar_type() != options.dtype().toScalarType() || ps[i].device() != options.device())
        throw std::invalid_argument("ZeRO: parameter '" + group.params[i].name + "' is " +
                                    std::string(c10::toString(ps[i].scalar_type())) + " on " + ps[i].device().str() +
                                    ", the others of its param group are " +
                                    std::string(c10::toString(options.dtype().toScalarType())) + " on " +
                                    options.device().str() + "; one dtype and device per param group");
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
