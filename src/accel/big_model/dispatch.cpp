#include "accel/big_model/dispatch.h"

#include <c10/core/StreamGuard.h>

#include <map>
#include <memory>
#include <set>

#include "accel/big_model/device_loader.h"
#include "accel/big_model/empty_init.h"
#include "accel/big_model/placement.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/util/check.h"
#include "accel/util/host_memory.h"

namespace accel {

namespace {

using big_model::PlacedTensor;
using big_model::Placement;

std::string listed(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 20; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 20) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

DeviceMap map_for(torch::nn::Module& model, const DispatchOptions& options) {
  if (options.device_map()) return check_device_map(model, *options.device_map());
  return check_device_map(model,
                          infer_auto_device_map(model, DeviceMapOptions()
                                                           .max_memory(options.max_memory())
                                                           .no_split_module_classes(options.no_split_module_classes())
                                                           .dtype(options.dtype())));
}

std::shared_ptr<Placement> placement_for(torch::nn::Module& model, const DeviceMap& map,
                                         const DispatchOptions& options) {
  const c10::Device main = options.main_device().value_or(big_model::default_main_device(map));
  return std::make_shared<Placement>(model, map, main, options.offload_buffers(), /*cpu_offloads=*/false);
}

Dispatched finish(torch::nn::Module& model, const std::shared_ptr<Placement>& placement, DeviceMap map) {
  if (placement->needs_hooks()) placement->attach(placement);
  return Dispatched{std::move(map), placement->main(), placement->root_device()};
}

// Host memory for an offloaded tensor: pinned when it will be copied to a GPU.
torch::Tensor host_tensor(torch::IntArrayRef shape, torch::ScalarType dtype, const c10::Device& exec) {
  return host_empty(c10::multiply_integers(shape), dtype, exec.is_cuda()).view(shape);
}

// Writes the offloaded tensors of `placement` mapped to "disk" into
// `dir`/offload.safetensors and points them at its mapping.
void offload_to_disk(Placement& placement, const std::filesystem::path& dir) {
  safetensors::NamedTensors to_write;
  for (auto& t : placement.tensors())
    if (t->offloaded && t->mapped == "disk") to_write.emplace_back(t->name, t->source);
  if (to_write.empty()) return;
  ACCEL_CHECK_ARG(!dir.empty(), "dispatch: tensors are mapped to \"disk\" (", to_write.front().first,
                  ", ...): give an offload_dir to write them to");
  std::filesystem::create_directories(dir);
  const auto path = dir / "offload.safetensors";
  safetensors::save_file(to_write, path);
  auto file = std::make_shared<safetensors::File>(path);
  for (auto& t : placement.tensors())
    if (t->offloaded && t->mapped == "disk") t->source = file->get(t->name);
}

}  // namespace

Dispatched load_checkpoint_and_dispatch(torch::nn::Module& model, const std::filesystem::path& checkpoint,
                                        const DispatchOptions& options) {
  ACCEL_CHECK_ARG(options.read_threads() >= 1, "load_checkpoint_and_dispatch: read_threads is ", options.read_threads(),
                  "; expected at least 1");
  DeviceMap map = map_for(model, options);
  auto placement = placement_for(model, map, options);
  const auto files = find_checkpoint_files(checkpoint);

  // Every name of every model tensor, and the checkpoint's names.
  std::map<std::string, PlacedTensor*> by_name;
  std::map<const c10::TensorImpl*, PlacedTensor*> by_impl;
  for (auto& t : placement->tensors()) by_impl[t->handle.unsafeGetTensorImpl()] = t.get();
  for (const auto& p : model.named_parameters()) by_name[p.key()] = by_impl.at(p.value().unsafeGetTensorImpl());
  for (const auto& b : model.named_buffers()) by_name[b.key()] = by_impl.at(b.value().unsafeGetTensorImpl());
  std::vector<std::string> unexpected, missing;
  std::set<const PlacedTensor*> found;
  for (const auto& [name, file] : files.weight_map) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      unexpected.push_back(name);
    } else {
      found.insert(it->second);
    }
  }
  for (const auto& t : placement->tensors())
    if (!found.count(t.get())) missing.push_back(t->name);
  ACCEL_CHECK_ARG(missing.empty() && unexpected.empty(), "load_checkpoint_and_dispatch: checkpoint '",
                  checkpoint.string(),
                  "' does not match the model:", missing.empty() ? "" : " missing " + listed(missing) + ";",
                  unexpected.empty() ? "" : " unexpected " + listed(unexpected) + ";");

  // Every destination is allocated first (what the map puts on each
  // device), then filled by the loader's threads.
  std::vector<std::shared_ptr<safetensors::File>> open;
  std::vector<big_model::LoadItem> items;
  std::vector<PlacedTensor*> targets;
  std::set<const PlacedTensor*> done;
  for (const auto& path : files.files) {
    auto file = std::make_shared<safetensors::File>(path);
    open.push_back(file);
    for (const auto& info : file->header().tensors) {
      PlacedTensor* t = by_name.at(info.name);
      if (!done.insert(t).second) continue;  // a tied tensor saved twice
      ACCEL_CHECK_ARG(t->handle.sizes() == torch::IntArrayRef(info.shape), "load_checkpoint_and_dispatch: '", info.name,
                      "' has shape ", torch::IntArrayRef(info.shape), " in '", path.string(), "' but ",
                      t->handle.sizes(), " in the model");
      const auto stored = safetensors::to_scalar_type(info.dtype);
      // Accelerate's rule: with a dtype, floating-point tensors take it and
      // others keep the file's; without, the model tensor's dtype.
      t->dtype = options.dtype() ? (c10::isFloatingType(stored) ? *options.dtype() : stored) : t->handle.scalar_type();
      if (t->mapped == "disk" && t->offloaded) {
        t->source = file->get(info.name);  // the file's mapping: nothing read now
        continue;
      }
      items.push_back({file.get(), &info,
                       t->offloaded
                           ? host_tensor(info.shape, t->dtype, t->exec)
                           : torch::empty(info.shape, torch::TensorOptions().dtype(t->dtype).device(t->exec))});
      targets.push_back(t);
    }
  }
  big_model::load_tensors(items, options.read_threads());
  for (size_t k = 0; k < items.size(); ++k) {
    if (targets[k]->offloaded) {
      targets[k]->source = items[k].dst;
    } else {
      replace_tensor_data(targets[k]->handle, items[k].dst);
    }
  }
  // Offloaded: the model's tensor stays on the meta device, in its dtype.
  for (auto& t : placement->tensors())
    if (t->offloaded)
      replace_tensor_data(t->handle,
                          torch::empty(t->handle.sizes(), torch::TensorOptions().dtype(t->dtype).device(c10::kMeta)));
  return finish(model, placement, std::move(map));
}

namespace {

// dispatch_model; `cpu_offloads`: "cpu" offloads even when the main device
// is the CPU (cpu_offload's weights kept aside and brought in per unit).
Dispatched dispatch_placed(torch::nn::Module& model, const DispatchOptions& options, bool cpu_offloads) {
  ACCEL_CHECK_ARG(options.device_map(), "dispatch_model: give a device_map (DispatchOptions::device_map)");
  DeviceMap map = check_device_map(model, *options.device_map());
  const c10::Device main = options.main_device().value_or(big_model::default_main_device(map));
  auto placement = std::make_shared<Placement>(model, map, main, options.offload_buffers(), cpu_offloads);
  for (auto& t : placement->tensors()) {
    ACCEL_CHECK_ARG(!t->handle.is_meta(), "dispatch_model: '", t->name,
                    "' is on the meta device: it has no value to place (load_checkpoint_and_dispatch reads one)");
    t->dtype = options.dtype() && t->handle.is_floating_point() ? *options.dtype() : t->handle.scalar_type();
    if (t->offloaded) {
      t->before = t->handle.device();
      if (t->mapped == "disk") {
        t->source = t->handle.detach().to(t->dtype);  // written out below, then read from the file
      } else {
        auto host = host_tensor(t->handle.sizes(), t->dtype, t->exec);
        host.copy_(t->handle.detach());
        t->source = host;
      }
    } else if (t->handle.device() != t->exec || t->handle.scalar_type() != t->dtype) {
      replace_tensor_data(t->handle, t->handle.detach().to(t->exec, t->dtype));
    }
  }
  offload_to_disk(*placement, options.offload_dir());
  for (auto& t : placement->tensors())
    if (t->offloaded)
      replace_tensor_data(t->handle,
                          torch::empty(t->handle.sizes(), t->handle.options().dtype(t->dtype).device(c10::kMeta)));
  return finish(model, placement, std::move(map));
}

}  // namespace

Dispatched dispatch_model(torch::nn::Module& model, const DispatchOptions& options) {
  return dispatch_placed(model, options, /*cpu_offloads=*/false);
}

namespace {

// Every unit offloaded to `device` ("cpu" or "disk"), the model's own
// tensors too when the model is a unit, else resident on `exec`.
Dispatched offload_all(torch::nn::Module& model, const std::string& device, c10::Device exec, bool offload_buffers,
                       const std::filesystem::path& dir) {
  DeviceMap map = {{"", device}};
  const bool root_is_unit = [&] {
    for (const auto& u : find_units(model))
      if (u.path.empty()) return true;
    return false;
  }();
  if (!root_is_unit) {
    // Tensors outside every unit: resident on the execution device.
    std::set<std::string> inside;
    for (const auto& u : find_units(model)) inside.insert(u.path);
    auto in_unit = [&](std::string at) {
      for (auto dot = at.rfind('.'); dot != std::string::npos; dot = at.rfind('.')) {
        at = at.substr(0, dot);
        if (inside.count(at)) return true;
      }
      return false;
    };
    for (const auto& p : model.named_parameters())
      if (!in_unit(p.key())) map[p.key()] = exec.str();
    for (const auto& b : model.named_buffers())
      if (!in_unit(b.key())) map[b.key()] = exec.str();
  }
  return dispatch_placed(
      model, DispatchOptions().device_map(map).main_device(exec).offload_buffers(offload_buffers).offload_dir(dir),
      /*cpu_offloads=*/true);
}

}  // namespace

Dispatched cpu_offload(torch::nn::Module& model, c10::Device execution_device, bool offload_buffers) {
  return offload_all(model, "cpu", execution_device, offload_buffers, {});
}

Dispatched disk_offload(torch::nn::Module& model, const std::filesystem::path& offload_dir,
                        c10::Device execution_device, bool offload_buffers) {
  return offload_all(model, "disk", execution_device, offload_buffers, offload_dir);
}

}  // namespace accel
