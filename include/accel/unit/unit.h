#pragma once
// Unit: the seam a model author places once around a block (each
// transformer layer, say), through which accel acts around the block's
// forward. LibTorch modules have no forward hooks, so whatever must happen
// just before or after a block runs (gather its sharded parameters, free
// them again, recompute it in backward, move it to its device) happens at
// a unit. Configuration then decides what each unit does; with nothing
// configured a unit is one pointer test around the block's forward.
//
//   struct TransformerImpl : torch::nn::Module {
//     TransformerImpl(const Options& o) {
//       h = register_module("h", torch::nn::ModuleList());
//       for (int i = 0; i < o.n_layer; ++i) {
//         blocks.emplace_back(Block(o), "GPT2Block");  // the unit, with the class name configs use
//         h->push_back(blocks.back().module());        // registered as before: names unchanged
//       }
//     }
//     torch::Tensor forward(torch::Tensor x) {
//       for (auto& block : blocks) x = block(x);        // through the unit, not block->forward
//       return x;
//     }
//     torch::nn::ModuleList h{nullptr};
//     std::vector<accel::Unit<Block>> blocks;
//   };
//
// A unit does not register anything: the block stays where the author
// registered it, so parameter names and checkpoints do not change. accel
// finds the units of a model by walking its modules (find_units) and asking,
// for each, whether a Unit wraps it.
//
// Unit class names (what FSDP_TRANSFORMER_CLS_TO_WRAP and
// ShardingOptions::transformer_cls_to_wrap name): the name the author gave
// (above "GPT2Block", as Hugging Face names that class, so Accelerate's
// config files work unchanged), and the C++ class of the block's module,
// with and without its namespace and with and without LibTorch's "Impl"
// suffix: gpt2::BlockImpl is "gpt2::BlockImpl", "gpt2::Block", "BlockImpl"
// and "Block". Names match exactly (case matters).
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/unit/checkpoint.h"
#include "accel/util/collect_tensors.h"
#include "accel/util/export.h"

namespace accel {

/// What acts around a unit's forward; installed by a mode (parameter
/// sharding, offload), at most one per unit.
class ACCEL_API UnitHooks {
 public:
  virtual ~UnitHooks();
  /// Just before the block's forward; `inputs` are the tensors among its
  /// arguments (hooks may be registered on them, to act once the block's
  /// backward has produced their gradients).
  virtual void pre_forward(const std::vector<torch::Tensor>& inputs) = 0;
  /// Just after it; `outputs` are the tensors of its result (hooks may be
  /// registered on them, to act before the block's backward).
  virtual void post_forward(std::vector<torch::Tensor>& outputs) = 0;

  /// A mode that replaces tensors (moves them to the block's device, say)
  /// returns true: after pre_forward the unit calls replace_inputs and runs
  /// the block on the tensors it leaves in `inputs`, and it returns the
  /// tensors post_forward leaves in `outputs`. Tensors inside an argument
  /// the block takes by non-const reference are replaced in place there.
  /// Other modes (the default) leave arguments and result untouched.
  virtual bool replaces_tensors() const { return false; }
  virtual void replace_inputs(std::vector<torch::Tensor>& inputs) {}
};

/// What every copy of one Unit shares, and what find_units returns.
class ACCEL_API UnitSlot {
 public:
  UnitSlot(std::shared_ptr<torch::nn::Module> module, std::string class_name);
  ~UnitSlot();
  UnitSlot(const UnitSlot&) = delete;
  UnitSlot& operator=(const UnitSlot&) = delete;

  torch::nn::Module& module() const { return *module_; }
  /// The name the author gave, else the module's C++ class ("gpt2::BlockImpl").
  const std::string& class_name() const { return class_name_; }
  /// Every name the unit answers to (see the header comment).
  std::vector<std::string> class_names() const;
  bool matches(const std::string& name) const;

  UnitHooks* hooks() const { return hooks_.get(); }
  /// Installs `hooks` (null removes them). Throws std::logic_error when
  /// other hooks are installed already: one mode owns a unit at a time.
  void set_hooks(std::shared_ptr<UnitHooks> hooks);

  /// Activation checkpointing (unit/checkpoint.h): the block's forward is
  /// recomputed in backward instead of keeping its activations. Needs a
  /// forward that returns one tensor and takes its tensors as arguments of
  /// type torch::Tensor (others throw std::logic_error when it runs).
  bool checkpoint() const { return checkpoint_; }
  void set_checkpoint(bool on) { checkpoint_ = on; }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::string class_name_;
  std::shared_ptr<UnitHooks> hooks_;
  bool checkpoint_ = false;
};

/// Records `module` as a unit (Unit's constructor calls it). Throws
/// std::invalid_argument for a null module, std::logic_error when a live
/// Unit already wraps it.
ACCEL_API std::shared_ptr<UnitSlot> register_unit(std::shared_ptr<torch::nn::Module> module, std::string class_name);

/// A block wrapped as a unit. Holder: a LibTorch module holder (a
/// TORCH_MODULE type, torch::nn::Linear, ...). Copies share one slot.
template <class Holder>
class Unit {
 public:
  Unit() = default;
  /// Wraps `module` (not null); `class_name` empty: the module's C++ class.
  explicit Unit(Holder module, std::string class_name = {})
      : module_(std::move(module)), slot_(register_unit(module_.ptr(), std::move(class_name))) {}

  template <class... Args>
  auto operator()(Args&&... args) {
    // An empty Unit (no slot) calls its empty holder, which says so.
    UnitHooks* hooks = slot_ ? slot_->hooks() : nullptr;
    const bool checkpoint = slot_ && slot_->checkpoint() && torch::GradMode::is_enabled();
    if (!hooks && !checkpoint) return module_->forward(std::forward<Args>(args)...);
    std::vector<torch::Tensor> inputs;
    collect_argument_tensors(inputs, args...);
    if (hooks) hooks->pre_forward(inputs);
    if (hooks && hooks->replaces_tensors())
      return forward_replacing(*hooks, inputs, checkpoint, std::forward<Args>(args)...);
    using Out = decltype(module_->forward(std::forward<Args>(args)...));
    Out out =
        checkpoint ? forward_checkpointed<Out>(inputs.size(), args...) : module_->forward(std::forward<Args>(args)...);
    if (hooks) {
      std::vector<torch::Tensor> outputs;
      collect_tensors(out, outputs);
      hooks->post_forward(outputs);
    }
    return out;
  }

  Holder& module() { return module_; }
  const Holder& module() const { return module_; }
  typename Holder::ContainedType* operator->() { return module_.get(); }
  const std::shared_ptr<UnitSlot>& slot() const { return slot_; }

 private:
  // The forward of a unit whose hooks replace tensors (UnitHooks::replaces_tensors).
  template <class... Args>
  auto forward_replacing(UnitHooks& hooks, std::vector<torch::Tensor>& inputs, bool checkpoint, Args&&... args) {
    hooks.replace_inputs(inputs);
    size_t next = 0;
    // The caller's own tensor variables are theirs again after the call:
    // the hooks' replacements (moved to a device, say) are the block's only.
    ArgumentRestore restore;
    // Braced initialisation: the arguments take their tensors left to right.
    std::tuple<decltype(replace_argument_tensors(std::forward<Args>(args), inputs, next, &restore.replaced))...> call{
        replace_argument_tensors(std::forward<Args>(args), inputs, next, &restore.replaced)...};
    using Out = decltype(module_->forward(std::forward<Args>(args)...));
    Out out = std::apply(
        [&](auto&&... a) -> Out {
          if (checkpoint) return forward_checkpointed<Out>(inputs.size(), a...);
          return module_->forward(std::forward<decltype(a)>(a)...);
        },
        std::move(call));
    std::vector<torch::Tensor> outputs;
    collect_tensors(out, outputs);
    hooks.post_forward(outputs);
    size_t taken = 0;
    return Out(replace_tensors(out, outputs, taken));
  }

  // The forward under activation checkpointing: the tensor arguments are
  // what the recompute replaces (`tensors_in_args`: all tensors found in them).
  template <class Out, class... Args>
  Out forward_checkpointed(size_t tensors_in_args, const Args&... args) {
    if constexpr (std::is_same_v<std::decay_t<Out>, torch::Tensor>) {
      std::vector<torch::Tensor> inputs;
      auto top = [&](const auto& arg) {
        if constexpr (std::is_same_v<std::decay_t<decltype(arg)>, torch::Tensor>) inputs.push_back(arg);
      };
      (top(args), ...);
      if (inputs.size() != tensors_in_args)
        throw std::logic_error("activation checkpointing: unit '" + slot_->class_name() +
                               "' takes tensors inside other arguments (vectors, tuples); only arguments of type "
                               "torch::Tensor can be recomputed");
      auto module = module_;
      auto saved = std::make_tuple(std::decay_t<Args>(args)...);
      return checkpointed(inputs, [module, saved](const std::vector<torch::Tensor>& tensors) mutable {
        auto call = saved;
        size_t i = 0;
        auto take = [&](auto& arg) {
          if constexpr (std::is_same_v<std::decay_t<decltype(arg)>, torch::Tensor>) arg = tensors.at(i++);
        };
        std::apply([&](auto&... a) { (take(a), ...); }, call);
        return std::apply([&](auto&... a) { return module->forward(a...); }, call);
      });
    } else {
      throw std::logic_error("activation checkpointing: unit '" + slot_->class_name() +
                             "' returns something other than one tensor; only such forwards can be recomputed");
    }
  }

  Holder module_{nullptr};
  std::shared_ptr<UnitSlot> slot_;
};

/// A unit found in a model: its dotted module path ("transformer.h.0") and slot.
struct ACCEL_API FoundUnit {
  std::string path;
  std::shared_ptr<UnitSlot> slot;
};

/// The units among `model`'s modules (the model itself included, path ""),
/// in named_modules() order: parents before their children.
ACCEL_API std::vector<FoundUnit> find_units(torch::nn::Module& model);

}  // namespace accel
