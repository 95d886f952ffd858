#include "accel/big_model/placement.h"

#include <c10/core/StreamGuard.h>

#include <algorithm>
#include <set>

#include "accel/big_model/empty_init.h"
#include "accel/big_model/hooks.h"
#include "accel/parallel/fsdp/copy_streams.h"
#include "accel/util/check.h"

namespace accel::big_model {

namespace {

c10::Device device_of(const std::string& mapped) { return c10::Device(mapped); }

// The hook of one unit: its offloaded tensors in before the block runs and
// out after, its inputs to its device, its outputs to its caller's.
class AlignHook : public ModelHook {
 public:
  AlignHook(std::shared_ptr<Placement> placement, size_t group) : placement_(std::move(placement)), group_(group) {}

  void pre_forward(torch::nn::Module&, std::vector<torch::Tensor>& inputs) override {
    Group& g = placement_->groups()[group_];
    input_device_.reset();
    for (const auto& t : inputs)
      if (t.defined()) {
        input_device_ = t.device();
        break;
      }
    placement_->record_order(group_);
    placement_->load(g);
    placement_->prefetch_after(group_);
    for (auto& t : inputs)
      if (t.defined() && t.device() != g.exec) t = t.to(g.exec);
  }

  void post_forward(torch::nn::Module&, std::vector<torch::Tensor>& outputs) override {
    Group& g = placement_->groups()[group_];
    placement_->drop(g);
    // The caller's device: the enclosing unit's, or for the model itself
    // the device its input came from.
    std::optional<c10::Device> back =
        g.parent >= 0 ? std::optional<c10::Device>(placement_->groups()[g.parent].exec) : input_device_;
    if (!back) return;
    for (auto& t : outputs)
      if (t.defined() && t.device() != *back) t = t.to(*back);
  }

  void detach_hook(torch::nn::Module&) override {
    // Offloaded tensors go back where they were before the offload, if
    // anywhere; the others stay on the meta device.
    for (PlacedTensor* t : placement_->groups()[group_].tensors) {
      if (!t->offloaded || !t->before || t->loaded > 0 || !t->handle.is_meta()) continue;
      replace_tensor_data(t->handle, t->source.to(*t->before, t->dtype));
    }
  }

 private:
  std::shared_ptr<Placement> placement_;
  size_t group_;
  std::optional<c10::Device> input_device_;
};

}  // namespace

c10::Device default_main_device(const DeviceMap& map) {
  std::optional<c10::Device> best;
  for (const auto& [name, device] : map)
    if (device.starts_with("cuda:")) {
      c10::Device d(device);
      if (!best || d.index() < best->index()) best = d;
    }
  return best.value_or(c10::Device(c10::kCPU));
}

Placement::Placement(torch::nn::Module& model, const DeviceMap& map, c10::Device main, bool offload_buffers,
                     bool cpu_offloads)
    : main_(main) {
  std::unordered_map<const torch::nn::Module*, std::shared_ptr<UnitSlot>> units;
  for (auto& found : find_units(model)) units.emplace(&found.slot->module(), found.slot);
  std::unordered_map<const c10::TensorImpl*, PlacedTensor*> placed;

  auto place = [&](const std::string& name, const torch::Tensor& t, bool buffer) -> PlacedTensor* {
    if (auto it = placed.find(t.unsafeGetTensorImpl()); it != placed.end()) return it->second;
    auto p = std::make_unique<PlacedTensor>();
    p->name = name;
    p->handle = t;
    p->buffer = buffer;
    p->mapped = device_for(map, name);
    p->dtype = t.scalar_type();
    const bool off_device = p->mapped == "disk" || (p->mapped == "cpu" && (!main_.is_cpu() || cpu_offloads));
    p->offloaded = off_device && (!buffer || offload_buffers);
    p->exec = p->mapped == "cpu" || p->mapped == "disk" ? main_ : device_of(p->mapped);
    placed.emplace(t.unsafeGetTensorImpl(), p.get());
    tensors_.push_back(std::move(p));
    return tensors_.back().get();
  };

  // Pre-order walk: a unit opens a group; other modules add to the
  // enclosing one.
  std::function<void(torch::nn::Module&, const std::string&, int)> walk = [&](torch::nn::Module& m,
                                                                              const std::string& path, int group) {
    auto it = units.find(&m);
    if (group < 0 || it != units.end()) {
      Group g;
      g.path = path;
      g.slot = it != units.end() ? it->second : nullptr;
      g.parent = group;
      groups_.push_back(std::move(g));
      group = static_cast<int>(groups_.size()) - 1;
    }
    const std::string prefix = path.empty() ? "" : path + ".";
    for (const auto& p : m.named_parameters(false))
      groups_[group].tensors.push_back(place(prefix + p.key(), p.value(), false));
    for (const auto& b : m.named_buffers(false))
      groups_[group].tensors.push_back(place(prefix + b.key(), b.value(), true));
    for (const auto& c : m.named_children()) walk(*c.value(), prefix + c.key(), group);
  };
  walk(model, "", -1);
  // cpu_offload / disk_offload of a model that is not a unit: its own
  // tensors, mapped to the execution device, stay there.
  if (cpu_offloads && !groups_.front().slot)
    for (PlacedTensor* t : groups_.front().tensors)
      if (t->mapped == main_.str()) t->offloaded = false;

  for (auto& g : groups_) {
    const PlacedTensor* first = nullptr;
    for (const PlacedTensor* t : g.tensors) {
      if (!first) {
        first = t;
        continue;
      }
      ACCEL_CHECK_ARG(t->exec == first->exec, "dispatch: '", first->name, "' runs on ", first->exec.str(), " and '",
                      t->name, "' on ", t->exec.str(), ", but both are used by the forward of ",
                      g.path.empty() ? std::string("the model itself") : "unit '" + g.path + "'",
                      ", where accel cannot move tensors between them; map them to one execution device (pass the "
                      "unit classes as no_split_module_classes)");
    }
    g.exec = first ? first->exec : (g.parent >= 0 ? groups_[g.parent].exec : main_);
  }
  Group& root = groups_.front();
  if (!root.slot) {
    for (const PlacedTensor* t : root.tensors)
      ACCEL_CHECK_ARG(!t->offloaded, "dispatch: '", t->name, "' is mapped to ", t->mapped,
                      " (offloaded), but it is used by the model's own forward, outside every unit, where accel "
                      "cannot bring it in: wrap the model in an accel::Unit and call it through that, or map '",
                      t->name, "' to ", main_.str());
  }
}

bool Placement::needs_hooks() const {
  std::set<std::string> devices;
  for (const auto& t : tensors_) {
    if (t->offloaded) return true;
    devices.insert(t->exec.str());
  }
  return devices.size() > 1;
}

void Placement::attach(const std::shared_ptr<Placement>& self) {
  for (size_t k = 0; k < groups_.size(); ++k)
    if (groups_[k].slot) add_hook_to_unit(*groups_[k].slot, std::make_shared<AlignHook>(self, k), /*append=*/true);
}

void Placement::record_order(size_t group) {
  if (order_known_) return;
  if (std::find(order_.begin(), order_.end(), group) != order_.end()) {
    order_known_ = true;
    return;
  }
  order_.push_back(group);
}

void Placement::load_one(PlacedTensor& t) {
  if (t.loaded++ > 0) return;
  torch::Tensor value;
  if (t.prefetched.defined()) {
    if (t.ready) t.ready->block(fsdp::current_stream(t.exec));
    value = std::move(t.prefetched);
    t.prefetched = torch::Tensor();
    t.ready.reset();
  } else {
    const bool async = t.exec.is_cuda() && t.source.is_pinned();
    value = t.source.to(t.exec, t.dtype, /*non_blocking=*/async);
  }
  replace_tensor_data(t.handle, value);
}

void Placement::load(Group& g) {
  for (PlacedTensor* t : g.tensors)
    if (t->offloaded) load_one(*t);
}

void Placement::drop(Group& g) {
  for (PlacedTensor* t : g.tensors) {
    if (!t->offloaded || --t->loaded > 0) continue;
    replace_tensor_data(t->handle, torch::empty(t->handle.sizes(), t->handle.options().device(c10::kMeta)));
  }
}

// On CUDA, copies the offloaded tensors of the next offloaded unit to run
// after `group` on a side stream now, so that the copies overlap the
// compute until then. The order is taken as a cycle: after the last unit
// comes the first unit of the next forward (a generation loop's next
// token). Units that enclose this one are skipped (still running, their
// tensors in), as are units with nothing to copy (resident, or read from a
// file's pageable mapping, which would make the copy synchronous).
void Placement::prefetch_after(size_t group) {
  if (!order_known_) return;
  auto at = std::find(order_.begin(), order_.end(), group);
  if (at == order_.end()) return;
  auto encloses = [&](size_t outer) {
    for (int g = groups_[group].parent; g >= 0; g = groups_[g].parent)
      if (static_cast<size_t>(g) == outer) return true;
    return false;
  };
  auto copies = [&](const Group& g) {
    return g.exec.is_cuda() && std::any_of(g.tensors.begin(), g.tensors.end(),
                                           [](const PlacedTensor* t) { return t->offloaded && t->source.is_pinned(); });
  };
  const size_t pos = static_cast<size_t>(at - order_.begin());
  std::optional<size_t> following;
  for (size_t step = 1; step < order_.size() && !following; ++step) {
    const size_t g = order_[(pos + step) % order_.size()];
    if (!encloses(g) && copies(groups_[g])) following = g;
  }
  if (!following) return;
  Group& next = groups_[*following];
  if (!copy_stream_) copy_stream_ = fsdp::copy_streams_for(next.exec)->to_device;
  const c10::Stream compute = fsdp::current_stream(next.exec);
  bool waited = false;
  for (PlacedTensor* t : next.tensors) {
    if (!t->offloaded || t->loaded > 0 || t->prefetched.defined() || !t->source.is_pinned()) continue;
    if (!waited) {
      // Memory the compute stream freed may be handed out again here.
      fsdp::wait_stream(*copy_stream_, compute);
      waited = true;
    }
    auto dst = torch::empty(t->handle.sizes(), t->handle.options().dtype(t->dtype).device(next.exec));
    {
      c10::StreamGuard on_copy(*copy_stream_);
      dst.copy_(t->source, /*non_blocking=*/true);
    }
    fsdp::record_use(dst, *copy_stream_);
    c10::Event ready(next.exec.type());
    ready.record(*copy_stream_);
    t->ready = std::move(ready);
    t->prefetched = std::move(dst);
  }
}

}  // namespace accel::big_model
