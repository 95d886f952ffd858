#include "accel/parallel/zero/element_wise.h"

#include <c10/util/Type.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/lbfgs.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <stdexcept>
#include <typeinfo>

#include "accel/util/check.h"

namespace accel::zero {

std::string require_element_wise(const torch::optim::Optimizer& optimizer) {
  const std::string type = c10::demangle(typeid(optimizer).name());
  ACCEL_CHECK_ARG(!optimizer.param_groups().empty(), "ZeRO: the optimizer (", type, ") has no param groups");
  // By the options type, as the checkpoint code recognises families: a
  // subclass (e.g. accel::FusedAdamW) keeps its family's update.
  const auto& o = optimizer.param_groups()[0].options();
  if (dynamic_cast<const torch::optim::AdamWOptions*>(&o)) return "AdamW";
  if (dynamic_cast<const torch::optim::AdamOptions*>(&o)) return "Adam";
  if (dynamic_cast<const torch::optim::SGDOptions*>(&o)) return "SGD";
  if (dynamic_cast<const torch::optim::RMSpropOptions*>(&o)) return "RMSprop";
  if (dynamic_cast<const torch::optim::AdagradOptions*>(&o)) return "Adagrad";
  if (dynamic_cast<const torch::optim::LBFGSOptions*>(&o))
    fail<std::invalid_argument>("ZeRO: cannot shard the optimizer ", type,
                                " (LBFGS): its update is not element-wise (line search and history over all "
                                "parameters together); use Adam, AdamW, SGD, RMSprop or Adagrad, or train without "
                                "sharding");
  fail<std::invalid_argument>("ZeRO: cannot shard the optimizer ", type,
                              ": only optimizers known to update element by element are supported (Adam, AdamW, "
                              "SGD, RMSprop, Adagrad and their subclasses)");
}

}  // namespace accel::zero
