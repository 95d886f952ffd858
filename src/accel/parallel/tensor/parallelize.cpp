#include "accel/parallel/tensor/parallelize.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <sstream>

#include <ATen/ops/linear.h>
#include <torch/nn/functional/linear.h>

#include "accel/dist/collectives.h"
#include "accel/ops/linear.h"
#include "accel/ops/linear_cross_entropy.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallel_linear.h"
#include "accel/parallel/tensor/regions.h"
#include "accel/parallel/tensor/shard.h"
#include "accel/parallel/tensor/vocab_parallel.h"
#include "accel/util/check.h"

namespace accel {
namespace {

constexpr const char* kStyleNames =
    "colwise, colwise_rep, packed_colwise, rowwise, rowwise_rep, embedding_rowwise (or vocab, embedding), "
    "sequence_parallel";

// What parallelize_tensor made, for the seams and for clipping. Keyed by
// address; the weak references tell a live entry from one whose module or
// tensor has died (and whose address may since hold another).
struct ModuleEntry {
  std::weak_ptr<torch::nn::Module> module;
  TensorParallelShard shard;
};
struct SliceEntry {
  c10::weak_intrusive_ptr<c10::TensorImpl> tensor;
  ProcessGroupPtr group;
  // How it was cut from the whole tensor: shard_dim(whole, dim, rank, size,
  // packed), or, when vocab_size > 0, vocab_range's rows of dim 0.
  int64_t dim = 0, packed = 1, vocab_size = 0;
};
struct Registry {
  std::mutex mutex;
  std::map<const torch::nn::Module*, ModuleEntry> modules;
  std::map<const c10::TensorImpl*, SliceEntry> slices;
};
Registry& registry() {
  static Registry r;
  return r;
}

const ModuleEntry* find_module(Registry& r, const torch::nn::Module* m) {
  auto it = r.modules.find(m);
  if (it == r.modules.end()) return nullptr;
  if (it->second.module.expired()) {
    r.modules.erase(it);
    return nullptr;
  }
  return &it->second;
}

const SliceEntry* find_slice(Registry& r, const torch::Tensor& t) {
  if (!t.defined()) return nullptr;
  auto it = r.slices.find(t.unsafeGetTensorImpl());
  if (it == r.slices.end()) return nullptr;
  if (it->second.tensor.expired()) {
    r.slices.erase(it);
    return nullptr;
  }
  return &it->second;
}

std::vector<std::string> components(const std::string& name) {
  std::vector<std::string> out;
  std::stringstream in(name);
  for (std::string part; std::getline(in, part, '.');) out.push_back(part);
  return out;
}

bool matches(const std::vector<std::string>& pattern, const std::string& name) {
  const auto parts = components(name);
  if (parts.size() != pattern.size()) return false;
  for (size_t i = 0; i < parts.size(); ++i)
    if (pattern[i] != "*" && pattern[i] != parts[i]) return false;
  return true;
}

// Replaces the tensor's data with its slice, keeping the tensor object (the
// module's member and its registered parameter are the same tensor).
// `cut` says how (SliceEntry's dim, packed, vocab_size).
struct Cut {
  int64_t dim = 0, packed = 1, vocab_size = 0;
};
void keep_slice(torch::Tensor& parameter, const torch::Tensor& slice, const ProcessGroupPtr& group, Cut cut,
                std::vector<SliceEntry>& made) {
  parameter.set_data(slice);
  made.push_back({c10::weak_intrusive_ptr<c10::TensorImpl>(parameter.getIntrusivePtr()), group, cut.dim, cut.packed,
                  cut.vocab_size});
}

// Sequence parallel: a whole parameter used on this rank's slice of the
// sequence gets a partial gradient; the hook sums it over the group before
// it is accumulated, so every rank holds the single-process gradient.
void sum_gradient_over(torch::Tensor& parameter, const ProcessGroupPtr& group) {
  if (!parameter.requires_grad()) return;
  parameter.register_hook([group](const torch::Tensor& grad) {
    auto sum = grad.clone();
    all_reduce_(sum, ReduceOp::sum, group);
    return sum;
  });
}

// "torch::nn::LayerNorm" for a torch::nn::LayerNormImpl: the name users write.
std::string type_name(const torch::nn::Module& m) {
  std::string name = m.name();
  if (name.ends_with("Impl")) name.resize(name.size() - 4);
  return name;
}

struct Planned {
  std::string name;
  std::shared_ptr<torch::nn::Module> module;
  TensorParallelStyle style;
};

}  // namespace

TensorParallelStyle::TensorParallelStyle(const std::string& name) {
  if (name == "colwise") {
  } else if (name == "colwise_rep") {
    gather_output = true;
  } else if (name == "packed_colwise") {
    packed = 2;  // transformers' split_factor: a fused gate and up projection
  } else if (name == "rowwise") {
    kind = Kind::rowwise;
  } else if (name == "rowwise_rep") {
    kind = Kind::rowwise;
    input_is_parallel = false;
  } else if (name == "embedding_rowwise" || name == "vocab" || name == "embedding") {
    kind = Kind::embedding_rowwise;
  } else if (name == "sequence_parallel") {
    kind = Kind::sequence_parallel;
    sequence_dim = 1;
  } else {
    fail("unknown tensor-parallel style \"", name, "\" (known: ", kStyleNames, ")");
  }
}

TensorParallelStyle TensorParallelStyle::packed_colwise(int64_t blocks) {
  ACCEL_CHECK_ARG(blocks >= 1, "packed_colwise: the number of packed blocks must be at least 1, got ", blocks);
  TensorParallelStyle s("colwise");
  s.packed = blocks;
  return s;
}

TensorParallelStyle TensorParallelStyle::on_sequence(int64_t dim) const {
  ACCEL_CHECK_ARG(kind == Kind::colwise || kind == Kind::rowwise, "on_sequence: the style ", name(),
                  " has no sequence-parallel form (expected a colwise or rowwise style)");
  ACCEL_CHECK_ARG(dim >= 0, "on_sequence: the sequence dimension is ", dim, ", expected >= 0");
  TensorParallelStyle s = *this;
  s.sequence_dim = dim;
  return s;
}

std::string TensorParallelStyle::name() const {
  const std::string seq = sequence_dim >= 0 ? str(" on sequence dim ", sequence_dim) : "";
  switch (kind) {
    case Kind::colwise:
      if (packed > 1) return str("packed_colwise(", packed, ")", seq);
      return (gather_output ? "colwise_rep" : "colwise") + seq;
    case Kind::rowwise: return (input_is_parallel ? "rowwise" : "rowwise_rep") + seq;
    case Kind::embedding_rowwise: return "embedding_rowwise";
    case Kind::sequence_parallel: return "sequence_parallel";
  }
  return "?";
}

void parallelize_tensor(torch::nn::Module& model, const ProcessGroupPtr& group, const TensorParallelPlan& plan) {
  ACCEL_CHECK_ARG(group, "parallelize_tensor: no process group");
  const int rank = group->getRank(), size = group->getSize();
  const auto modules = model.named_modules();
  // Every check first: a refused plan leaves the model as it was.
  std::vector<Planned> todo;
  std::map<std::string, std::string> claimed;  // module -> the pattern that named it
  auto& reg = registry();
  std::unique_lock lock(reg.mutex);
  for (const auto& [pattern, style] : plan) {
    const auto parts = components(pattern);
    bool any = false;
    for (const auto& item : modules) {
      if (item.key().empty() || !matches(parts, item.key())) continue;
      any = true;
      const std::string& name = item.key();
      ACCEL_CHECK_ARG(!claimed.count(name), "tensor-parallel plan: module \"", name, "\" is named by \"", claimed[name],
                      "\" and by \"", pattern, "\"");
      claimed[name] = pattern;
      ACCEL_CHECK_ARG(!find_module(reg, item.value().get()), "tensor-parallel plan: module \"", name,
                      "\" is already split");
      auto* linear = dynamic_cast<torch::nn::LinearImpl*>(item.value().get());
      auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(item.value().get());
      const std::string what = str("module \"", name, "\" (", style.name(), ")");
      if (style.kind == TensorParallelStyle::Kind::sequence_parallel) {
        // Any module: it runs on a slice of the sequence as it is.
      } else if (style.kind == TensorParallelStyle::Kind::embedding_rowwise) {
        ACCEL_CHECK_ARG(embedding, "tensor-parallel plan: ", what, " is a ", type_name(*item.value()),
                        ", expected a torch::nn::Embedding");
        vocab_range(embedding->weight.size(0), rank, size);  // checks there is a row per rank
      } else {
        ACCEL_CHECK_ARG(linear, "tensor-parallel plan: ", what, " is a ", type_name(*item.value()),
                        ", expected a torch::nn::Linear");
        const bool col = style.kind == TensorParallelStyle::Kind::colwise;
        const int64_t n = linear->weight.size(col ? 0 : 1), divisor = (col ? style.packed : 1) * size;
        ACCEL_CHECK_ARG(n % divisor == 0, "tensor-parallel plan: ", what, " has ", n,
                        col ? " out-features" : " in-features", ", not a multiple of ", divisor,
                        style.packed > 1 && col
                            ? str(" (", style.packed, " packed blocks x tensor-parallel size ", size, ")")
                            : str(" (the tensor-parallel size)"));
      }
      todo.push_back({name, item.value(), style});
    }
    ACCEL_CHECK_ARG(any, "tensor-parallel plan: \"", pattern, "\" matches no module of the model");
  }

  torch::NoGradGuard no_grad;
  for (auto& p : todo) {
    std::vector<SliceEntry> made;
    TensorParallelShard shard{p.style, group};
    if (p.style.kind == TensorParallelStyle::Kind::sequence_parallel) {
      for (auto& t : p.module->parameters()) sum_gradient_over(t, group);
    } else if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(p.module.get())) {
      if (p.style.kind == TensorParallelStyle::Kind::colwise) {
        shard.full_size = linear->weight.size(0);
        const Cut rows{0, p.style.packed};
        keep_slice(linear->weight, shard_dim(linear->weight, 0, rank, size, p.style.packed, p.name), group, rows, made);
        if (linear->bias.defined())
          keep_slice(linear->bias, shard_dim(linear->bias, 0, rank, size, p.style.packed, p.name), group, rows, made);
      } else {
        shard.full_size = linear->weight.size(1);
        keep_slice(linear->weight, shard_dim(linear->weight, 1, rank, size, 1, p.name), group, Cut{1, 1}, made);
        // Added to this rank's slice of the sequence: a partial gradient.
        if (p.style.sequence_dim >= 0 && linear->bias.defined()) sum_gradient_over(linear->bias, group);
      }
    } else {
      auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(p.module.get());
      shard.vocab_size = shard.full_size = embedding->weight.size(0);
      const auto [begin, end] = vocab_range(shard.vocab_size, rank, size);
      shard.vocab_begin = begin;
      keep_slice(embedding->weight, embedding->weight.narrow(0, begin, end - begin).clone(), group,
                 Cut{0, 1, shard.vocab_size}, made);
    }
    reg.modules.insert_or_assign(p.module.get(), ModuleEntry{p.module, shard});
    for (auto& s : made) {
      auto impl = s.tensor.lock();
      reg.slices.insert_or_assign(impl.get(), std::move(s));
    }
  }
}

void parallelize_tensor(torch::nn::Module& model, const DeviceMesh& mesh, const TensorParallelPlan& plan) {
  const auto dims = mesh.dim_names();
  if (std::find(dims.begin(), dims.end(), "tp") == dims.end()) return;
  parallelize_tensor(model, mesh.group("tp"), plan);
}

std::optional<TensorParallelShard> tensor_parallel_shard(const torch::nn::Module& module) {
  auto& reg = registry();
  std::lock_guard lock(reg.mutex);
  const auto* entry = find_module(reg, &module);
  if (!entry) return std::nullopt;
  return entry->shard;
}

bool is_tensor_parallel_slice(const torch::Tensor& parameter) {
  auto& reg = registry();
  std::lock_guard lock(reg.mutex);
  return find_slice(reg, parameter) != nullptr;
}

namespace {
std::optional<SliceEntry> slice_entry(const torch::Tensor& parameter) {
  auto& reg = registry();
  std::lock_guard lock(reg.mutex);
  const auto* entry = find_slice(reg, parameter);
  if (!entry) return std::nullopt;
  return *entry;
}
}  // namespace

torch::Tensor full_tensor_parallel_parameter(const torch::Tensor& parameter) {
  return full_tensor_parallel_parameter(parameter, parameter);
}

torch::Tensor full_tensor_parallel_parameter(const torch::Tensor& parameter, const torch::Tensor& value) {
  const auto entry = slice_entry(parameter);
  if (!entry) return value;
  ACCEL_CHECK_ARG(value.sizes() == parameter.sizes(), "full_tensor_parallel_parameter: a value of ", value.sizes(),
                  " for a tensor-parallel slice of ", parameter.sizes());
  const int size = entry->group->getSize();
  // The split dimension first, so that every rank's piece is whole rows;
  // an uneven vocabulary is padded to the largest piece (rank 0's) for the
  // gather and cut back after.
  // Gathered where the parameter lives (a copy in host memory cannot go
  // through NCCL), returned where `value` was.
  auto local = value.detach().to(parameter.device()).movedim(entry->dim, 0).contiguous();
  std::vector<int64_t> rows(static_cast<size_t>(size), local.size(0));
  if (entry->vocab_size > 0)
    for (int r = 0; r < size; ++r) {
      const auto [begin, end] = vocab_range(entry->vocab_size, r, size);
      rows[static_cast<size_t>(r)] = end - begin;
    }
  const int64_t most = *std::max_element(rows.begin(), rows.end());
  if (local.size(0) < most) {
    auto shape = local.sizes().vec();
    shape[0] = most - local.size(0);
    local = torch::cat({local, torch::zeros(shape, local.options())}, 0);
  }
  auto all = gather(local, entry->group).chunk(size, 0);
  std::vector<torch::Tensor> pieces;
  for (int r = 0; r < size; ++r)
    pieces.push_back(all[r].narrow(0, 0, rows[static_cast<size_t>(r)]).movedim(0, entry->dim));
  return unshard_dim(pieces, entry->dim, entry->packed).to(value.device());
}

torch::Tensor tensor_parallel_slice_of(const torch::Tensor& parameter, const torch::Tensor& whole) {
  const auto entry = slice_entry(parameter);
  if (!entry) return whole;
  const int rank = entry->group->getRank(), size = entry->group->getSize();
  torch::Tensor mine;
  if (entry->vocab_size > 0) {
    ACCEL_CHECK_ARG(whole.dim() >= 1 && whole.size(0) == entry->vocab_size, "tensor_parallel_slice_of: a tensor of ",
                    whole.sizes(), " for a vocabulary of ", entry->vocab_size, " rows");
    const auto [begin, end] = vocab_range(entry->vocab_size, rank, size);
    mine = whole.narrow(0, begin, end - begin);
  } else {
    mine = shard_dim(whole, entry->dim, rank, size, entry->packed, "tensor_parallel_slice_of");
  }
  ACCEL_CHECK_ARG(mine.sizes() == parameter.sizes(), "tensor_parallel_slice_of: the whole tensor of ", whole.sizes(),
                  " cuts to ", mine.sizes(), " on tensor-parallel rank ", rank, ", but the slice there is ",
                  parameter.sizes());
  return mine.contiguous();
}

std::optional<TensorParallelPlacement> tensor_parallel_placement(const torch::Tensor& parameter) {
  const auto entry = slice_entry(parameter);
  if (!entry) return std::nullopt;
  const int rank = entry->group->getRank(), size = entry->group->getSize();
  TensorParallelPlacement out;
  out.dim = entry->dim;
  out.whole_shape = parameter.sizes().vec();
  TensorParallelPlacement::Box box{std::vector<int64_t>(out.whole_shape.size(), 0), out.whole_shape};
  if (entry->vocab_size > 0) {
    const auto [begin, end] = vocab_range(entry->vocab_size, rank, size);
    out.whole_shape[0] = entry->vocab_size;
    box.offset[0] = begin;
    box.size[0] = end - begin;
    out.boxes.push_back(box);
    return out;
  }
  // shard_dim's cut: each of the `packed` blocks of the whole split in
  // `size` pieces, this rank's piece of every block.
  const auto d = static_cast<size_t>(entry->dim);
  const int64_t piece = parameter.size(entry->dim) / entry->packed;
  out.whole_shape[d] = piece * size * entry->packed;
  box.size[d] = piece;
  for (int64_t b = 0; b < entry->packed; ++b) {
    box.offset[d] = (b * size + rank) * piece;
    out.boxes.push_back(box);
  }
  return out;
}

namespace {
// The module's split when it is of `kind` (a sequence_parallel module runs as itself).
std::optional<TensorParallelShard> split_as(const torch::nn::Module& module,
                                            std::initializer_list<TensorParallelStyle::Kind> kinds) {
  auto shard = tensor_parallel_shard(module);
  if (shard && std::find(kinds.begin(), kinds.end(), shard->style.kind) == kinds.end()) return std::nullopt;
  return shard;
}
}  // namespace

torch::Tensor parallel_linear(const torch::nn::Linear& linear, const torch::Tensor& x) {
  const auto& impl = linear.ptr();
  const auto shard = split_as(*impl, {TensorParallelStyle::Kind::colwise, TensorParallelStyle::Kind::rowwise});
  // accel::linear, not the module's forward: LibTorch's functional linear
  // runs a [B, T, C] input as matmul + a broadcast add of the bias (and sums
  // the bias gradient apart in backward), where at::linear folds it to 2-D
  // and addmm puts the bias in the GEMM's epilogue; accel::linear is
  // at::linear with the bias gradient in the weight-gradient GEMM on CUDA.
  // Same values.
  if (!shard) return accel::linear(x, impl->weight, impl->bias);
  const auto& style = shard->style;
  if (style.kind == TensorParallelStyle::Kind::colwise)
    return column_parallel_linear(x, impl->weight, impl->bias, shard->group, style.gather_output, style.sequence_dim);
  return row_parallel_linear(x, impl->weight, impl->bias, shard->group, style.input_is_parallel, style.sequence_dim);
}

torch::Tensor enter_sequence_parallel(const torch::nn::Module& module, const torch::Tensor& x) {
  const auto shard = split_as(module, {TensorParallelStyle::Kind::sequence_parallel});
  if (!shard) return x;
  return scatter_to_sequence_parallel_region(x, shard->group, shard->style.sequence_dim);
}

torch::Tensor leave_sequence_parallel(const torch::nn::Module& module, const torch::Tensor& x) {
  const auto shard = split_as(module, {TensorParallelStyle::Kind::sequence_parallel});
  if (!shard) return x;
  return gather_from_sequence_parallel_region(x, shard->group, shard->style.sequence_dim, /*grad_is_partial=*/false);
}

torch::Tensor parallel_embedding(const torch::nn::Embedding& embedding, const torch::Tensor& ids) {
  const auto& impl = embedding.ptr();
  const auto shard = split_as(*impl, {TensorParallelStyle::Kind::embedding_rowwise});
  if (!shard) return impl->forward(ids);
  return vocab_parallel_embedding(ids, impl->weight, shard->vocab_begin, shard->vocab_size, shard->group);
}

torch::Tensor parallel_tied_logits(const torch::Tensor& hidden, const torch::nn::Embedding& embedding) {
  const auto& weight = embedding->weight;
  const auto shard = split_as(*embedding.ptr(), {TensorParallelStyle::Kind::embedding_rowwise});
  if (!shard) return torch::nn::functional::linear(hidden, weight);
  auto local = torch::nn::functional::linear(copy_to_tensor_parallel_region(hidden, shard->group), weight);
  std::vector<int64_t> sizes;
  for (int r = 0; r < shard->group->getSize(); ++r) {
    const auto [begin, end] = vocab_range(shard->vocab_size, r, shard->group->getSize());
    sizes.push_back(end - begin);
  }
  return gather_from_tensor_parallel_region(local, shard->group, sizes);
}

torch::Tensor parallel_tied_cross_entropy(const torch::Tensor& hidden, const torch::nn::Embedding& embedding,
                                          const torch::Tensor& targets, const LinearCrossEntropyOptions& options) {
  const auto& weight = embedding->weight;
  const auto shard = split_as(*embedding.ptr(), {TensorParallelStyle::Kind::embedding_rowwise});
  if (!shard) return linear_cross_entropy(hidden, weight, targets, options);
  auto local = torch::nn::functional::linear(copy_to_tensor_parallel_region(hidden, shard->group), weight);
  return vocab_parallel_cross_entropy(local, targets, shard->vocab_begin, shard->vocab_size, shard->group,
                                      options.ignore_index());
}

GradientSet tensor_parallel_gradients(const std::vector<torch::Tensor>& parameters) {
  GradientSet out;
  auto& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (const auto& p : parameters) {
    if (!p.grad().defined()) continue;
    const auto* slice = find_slice(reg, p);
    if (!slice) {
      out.replicated.push_back(p.grad());
      continue;
    }
    ACCEL_CHECK_ARG(!out.group || out.group == slice->group,
                    "tensor_parallel_gradients: parameters split over different process groups");
    out.group = slice->group;
    out.sharded.push_back(p.grad());
  }
  return out;
}

}  // namespace accel
