#include "accel/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <c10/core/GradMode.h>

#include "accel/checkpoint/atomic_file.h"
#include "accel/tracking/transfer_progress.h"
#include "accel/util/check.h"
#include "accel/util/excerpt.h"

namespace accel::safetensors {

// The format is little-endian; so are all machines accel targets. A
// big-endian port would have to swap bytes on read and write.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian machine");

namespace {

std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

}  // namespace

torch::ScalarType to_scalar_type(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL: return torch::kBool;
    case Dtype::U8: return torch::kUInt8;
    case Dtype::I8: return torch::kInt8;
    case Dtype::F8_E5M2: return torch::kFloat8_e5m2;
    case Dtype::F8_E4M3: return torch::kFloat8_e4m3fn;
    case Dtype::F8_E8M0: return torch::kFloat8_e8m0fnu;
    case Dtype::F8_E4M3FNUZ: return torch::kFloat8_e4m3fnuz;
    case Dtype::F8_E5M2FNUZ: return torch::kFloat8_e5m2fnuz;
    case Dtype::I16: return torch::kInt16;
    case Dtype::U16: return torch::kUInt16;
    case Dtype::F16: return torch::kFloat16;
    case Dtype::BF16: return torch::kBFloat16;
    case Dtype::I32: return torch::kInt32;
    case Dtype::U32: return torch::kUInt32;
    case Dtype::F32: return torch::kFloat32;
    case Dtype::C64: return torch::kComplexFloat;
    case Dtype::F64: return torch::kFloat64;
    case Dtype::I64: return torch::kInt64;
    case Dtype::U64: return torch::kUInt64;
  }
  fail<std::invalid_argument>("safetensors: unknown dtype");
}

Dtype from_scalar_type(torch::ScalarType type) {
  switch (type) {
    case torch::kBool: return Dtype::BOOL;
    case torch::kUInt8: return Dtype::U8;
    case torch::kInt8: return Dtype::I8;
    case torch::kFloat8_e5m2: return Dtype::F8_E5M2;
    case torch::kFloat8_e4m3fn: return Dtype::F8_E4M3;
    case torch::kFloat8_e8m0fnu: return Dtype::F8_E8M0;
    case torch::kFloat8_e4m3fnuz: return Dtype::F8_E4M3FNUZ;
    case torch::kFloat8_e5m2fnuz: return Dtype::F8_E5M2FNUZ;
    case torch::kInt16: return Dtype::I16;
    case torch::kUInt16: return Dtype::U16;
    case torch::kFloat16: return Dtype::F16;
    case torch::kBFloat16: return Dtype::BF16;
    case torch::kInt32: return Dtype::I32;
    case torch::kUInt32: return Dtype::U32;
    case torch::kFloat32: return Dtype::F32;
    case torch::kComplexFloat: return Dtype::C64;
    case torch::kFloat64: return Dtype::F64;
    case torch::kInt64: return Dtype::I64;
    case torch::kUInt64: return Dtype::U64;
    default: fail<std::invalid_argument>("safetensors has no dtype for ", c10::toString(type));
  }
}

// ---- reading ---------------------------------------------------------------

struct File::Mapping {
  char* data = nullptr;
  size_t size = 0;
  // Kept open for copies: pread into the destination is one copy with
  // kernel readahead, where copying out of the mapping pays a page fault
  // per page (~2-4x slower from the page cache).
  int fd = -1;
  ~Mapping() {
    if (data) ::munmap(data, size);
    if (fd >= 0) ::close(fd);
  }
};

File::File(const std::filesystem::path& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ACCEL_CHECK(fd >= 0, "cannot open safetensors file '", path.string(), "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail<std::runtime_error>("safetensors file '", path.string(), "' is not a regular file");
  }
  auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail<std::runtime_error>("safetensors file '", path.string(), "': file is ", size,
                             " bytes, shorter than the 8-byte header size");
  }
  // Private and writable: tensors that share the mapping may be written to
  // (copy-on-write); the file itself is never changed.
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int error = errno;
  if (data == MAP_FAILED) {
    ::close(fd);
    fail<std::runtime_error>("cannot map safetensors file '", path.string(), "': ", std::strerror(error));
  }
  mapping_ = std::make_shared<Mapping>();
  mapping_->data = static_cast<char*>(data);
  mapping_->size = size;
  mapping_->fd = fd;
  // Tensors are mostly read front to back: a larger readahead window.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  header_ = parse_file_header(std::string_view(mapping_->data, size), path.string());
  for (size_t i = 0; i < header_.tensors.size(); ++i) by_name_.emplace(header_.tensors[i].name, i);
}

std::vector<std::string> File::keys() const {
  std::vector<std::string> names;
  names.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) names.push_back(t.name);
  return names;
}

const TensorInfo& File::info(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    fail<std::out_of_range>("safetensors file '", path_.string(), "' has no tensor '", excerpt(name), "'");
  return header_.tensors[it->second];
}

torch::Tensor File::view(const TensorInfo& info) const {
  auto options = torch::TensorOptions().dtype(to_scalar_type(info.dtype));
  if (info.nbytes() == 0) return torch::empty(info.shape, options);
  char* bytes = mapping_->data + header_.data_start() + info.begin;
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(info.dtype) == 0) {
    // The tensor holds a reference to the mapping; the file stays mapped
    // until the last tensor made from it is gone.
    return torch::from_blob(
        bytes, info.shape, [keep = mapping_](void*) {}, options);
  }
  // A header whose length is not a multiple of 8 (other writers) leaves
  // data misaligned for its dtype: such tensors are copied.
  auto tensor = torch::empty(info.shape, options);
  std::memcpy(tensor.data_ptr(), bytes, info.nbytes());
  return tensor;
}

torch::Tensor File::get(std::string_view name) const { return view(info(name)); }

bool File::read_bytes(const TensorInfo& info, torch::Tensor& dst) const {
  if (!dst.is_cpu() || !dst.is_contiguous() || dst.scalar_type() != to_scalar_type(info.dtype) ||
      static_cast<uint64_t>(dst.nbytes()) != info.nbytes()) {
    return false;
  }
  char* out = static_cast<char*>(dst.data_ptr());
  uint64_t offset = header_.data_start() + info.begin;
  uint64_t left = info.nbytes();
  while (left > 0) {
    ssize_t n = ::pread(mapping_->fd, out, std::min<uint64_t>(left, uint64_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    ACCEL_CHECK(n > 0, "cannot read tensor '", info.name, "' from safetensors file '", path_.string(),
                "': ", n < 0 ? std::strerror(errno) : "file shrank while open");
    out += n;
    offset += static_cast<uint64_t>(n);
    left -= static_cast<uint64_t>(n);
  }
  return true;
}

void File::will_need(const TensorInfo& info) const {
  // Copies to a device read the mapping page by page; asking the kernel for
  // this tensor and the next 256 MB up front turns those faults into large
  // asynchronous reads that overlap the copies (a cold load then runs at the
  // disk's parallel speed, not at one fault at a time).
  constexpr uint64_t kAhead = uint64_t{256} << 20;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = (header_.data_start() + info.begin) / page * page;
  const uint64_t end = std::min<uint64_t>(mapping_->size, header_.data_start() + info.begin + info.nbytes() + kAhead);
  if (end > begin) ::madvise(mapping_->data + begin, end - begin, MADV_WILLNEED);  // advice only: errors are harmless
}

torch::Tensor File::get(std::string_view name, torch::Device device) const {
  const TensorInfo& i = info(name);
  auto out = torch::empty(i.shape, torch::TensorOptions().dtype(to_scalar_type(i.dtype)).device(device));
  if (!read_bytes(i, out)) {
    will_need(i);
    out.copy_(view(i));
  }
  return out;
}

void File::read_into(std::string_view name, torch::Tensor& dst, bool allow_cast) const {
  const TensorInfo& i = info(name);
  auto where = "safetensors file '" + path_.string() + "', tensor '" + std::string(name) + "': ";
  ACCEL_CHECK_ARG(dst.defined(), where, "destination tensor is undefined");
  ACCEL_CHECK_ARG(dst.sizes() == c10::IntArrayRef(i.shape), where, "file shape ", shape_string(i.shape),
                  " does not match destination shape ", shape_string(dst.sizes()));
  auto type = to_scalar_type(i.dtype);
  ACCEL_CHECK_ARG(dst.scalar_type() == type || allow_cast, where, "file dtype ", dtype_name(i.dtype), " (",
                  c10::toString(type), ") does not match destination dtype ", c10::toString(dst.scalar_type()));
  c10::NoGradGuard no_grad;
  if (read_bytes(i, dst)) {
    dst.unsafeGetTensorImpl()->bump_version();  // as copy_ would: autograd sees the change
  } else {
    dst.copy_(view(i));
  }
  TransferProgress::advance(static_cast<int64_t>(i.nbytes()));
}

OrderedTensors load_file(const std::filesystem::path& path, torch::Device device) {
  File file(path);
  TransferProgress::expect(static_cast<int64_t>(file.header().data_size()));
  OrderedTensors out;
  out.reserve(file.header().tensors.size());
  for (const auto& t : file.header().tensors) {
    out.insert(t.name, device.is_cpu() ? file.get(t.name) : file.get(t.name, device));
    TransferProgress::advance(static_cast<int64_t>(t.nbytes()));
  }
  return out;
}

Metadata load_metadata(const std::filesystem::path& path) { return File(path).metadata(); }

OrderedTensors load(std::string_view bytes) {
  Header header = parse_file_header(bytes, "<memory>");
  OrderedTensors out;
  out.reserve(header.tensors.size());
  for (const auto& t : header.tensors) {
    auto tensor = torch::empty(t.shape, torch::TensorOptions().dtype(to_scalar_type(t.dtype)));
    if (t.nbytes() > 0) std::memcpy(tensor.data_ptr(), bytes.data() + header.data_start() + t.begin, t.nbytes());
    out.insert(t.name, std::move(tensor));
  }
  return out;
}

// ---- writing ---------------------------------------------------------------

namespace {

struct Prepared {
  Header header;
  std::string header_bytes;
  // In file order, matching header.tensors.
  std::vector<torch::Tensor> tensors;
};

Prepared prepare(const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  std::unordered_map<std::string_view, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors) {
    auto where = "safetensors: tensor '" + name + "' ";
    ACCEL_CHECK_ARG(t.defined(), where, "is undefined");
    ACCEL_CHECK_ARG(t.layout() == torch::kStrided, where, "is not dense (make it dense first)");
    ACCEL_CHECK_ARG(!t.is_meta(), where, "is on the meta device and has no data");
    const bool first = by_name.emplace(name, &t).second;
    ACCEL_CHECK_ARG(first, "safetensors: tensor name '", name, "' is given twice");
    specs.push_back({name, from_scalar_type(t.scalar_type()), t.sizes().vec()});
  }
  Prepared p;
  p.header = plan_layout(std::move(specs), metadata);
  p.header_bytes = serialize_header(p.header);
  p.tensors.reserve(p.header.tensors.size());
  for (const auto& info : p.header.tensors) p.tensors.push_back(*by_name.at(info.name));
  return p;
}

// The bytes of one tensor as the file holds them: dense, row-major, on the
// CPU, with lazy conjugation/negation applied.
torch::Tensor file_bytes(const torch::Tensor& t) { return t.resolve_conj().resolve_neg().to(torch::kCPU).contiguous(); }

}  // namespace

void write_tensors(AtomicFile& out, const NamedTensors& tensors, const Metadata& metadata) {
  Prepared p = prepare(tensors, metadata);
  out.write(p.header_bytes);
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    if (p.header.tensors[i].nbytes() == 0) continue;
    auto bytes = file_bytes(p.tensors[i]);
    out.write(bytes.data_ptr(), bytes.nbytes());
    TransferProgress::advance(static_cast<int64_t>(bytes.nbytes()));
  }
}

void save_file(const NamedTensors& tensors, const std::filesystem::path& path, const Metadata& metadata) {
  // On any error the AtomicFile removes its temporary file; `path` is
  // replaced only by commit().
  AtomicFile file(path);
  int64_t bytes = 0;
  for (const auto& [name, t] : tensors)
    if (t.defined()) bytes += static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
  TransferProgress::expect(bytes);
  write_tensors(file, tensors, metadata);
  file.commit();
}

NamedTensors to_named(const OrderedTensors& tensors) {
  NamedTensors named;
  named.reserve(tensors.size());
  for (const auto& item : tensors) named.emplace_back(item.key(), item.value());
  return named;
}

std::string save(const NamedTensors& tensors, const Metadata& metadata) {
  Prepared p = prepare(tensors, metadata);
  std::string out = std::move(p.header_bytes);
  out.reserve(out.size() + p.header.data_size());
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    if (p.header.tensors[i].nbytes() == 0) continue;
    auto bytes = file_bytes(p.tensors[i]);
    out.append(static_cast<const char*>(bytes.data_ptr()), bytes.nbytes());
  }
  return out;
}

}  // namespace accel::safetensors
