"""Python side of accel's safetensors peer tests (tests/peer/safetensors_peer_test.cpp).

Each command prints one JSON object on stdout. Tensors are described by
dtype (the safetensors name), shape and an FNV-1a 64 hash of their raw
bytes, which the C++ side computes the same way: equal hashes mean the
bytes are equal, bit for bit.

  manifest FILE              describe the tensors of FILE (read by Python)
  resave IN OUT              load IN and save it again with Python's writer
  write FILE                 write every dtype from Python, describe them
  sharded DIR ORDER MAX      read an accel sharded save; compare its split with huggingface_hub's
  accelerate-save DIR MAX    save a tied model with Accelerate's save_model
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ", torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e8m0fnu: "F8_E8M0", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.complex64: "C64",
}


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def describe(t: torch.Tensor) -> dict:
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return {"dtype": NAMES[t.dtype], "shape": list(t.shape), "fnv": fnv1a64(raw)}


def manifest(tensors: dict) -> dict:
    return {name: describe(t) for name, t in tensors.items()}


def file_metadata(path):
    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def random_bits(dtype, shape, gen):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen, dtype=torch.uint8).bool()
    size = torch.empty((), dtype=dtype).element_size()
    shape = list(shape)
    n = 1
    for d in shape:
        n *= d
    raw = torch.randint(0, 256, (n * size,), generator=gen, dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)


def cmd_manifest(path):
    return {"metadata": file_metadata(path), "tensors": manifest(load_file(path))}


def cmd_resave(src, dst):
    save_file(load_file(src), dst, metadata=file_metadata(src) or None)
    return {"ok": True}


def cmd_write(path):
    gen = torch.Generator().manual_seed(11)
    tensors = {}
    for dtype, name in NAMES.items():
        tensors[f"t_{name}"] = random_bits(dtype, (3, 5), gen)
    tensors["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    tensors["empty"] = torch.zeros((0, 4), dtype=torch.float16)
    tensors["layers.0.attn.weight"] = torch.randn(4, 4, generator=gen).to(torch.bfloat16)
    save_file(tensors, path, metadata={"format": "pt"})
    return {"metadata": {"format": "pt"}, "tensors": manifest(tensors)}


def cmd_sharded(directory, order_path, max_size):
    from huggingface_hub import split_torch_state_dict_into_shards

    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        index = json.load(f)
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        for name, t in load_file(os.path.join(directory, shard)).items():
            assert index["weight_map"][name] == shard, (name, shard)
            state[name] = t
    assert set(state) == set(index["weight_map"]), "index and shards disagree"
    with open(order_path) as f:
        order = json.load(f)
    ordered = {name: state[name] for name in order}
    split = split_torch_state_dict_into_shards(
        ordered, filename_pattern="model{suffix}.safetensors", max_shard_size=int(max_size))
    return {
        "tensors": manifest(state),
        "total_size_matches": index["metadata"]["total_size"] == split.metadata["total_size"],
        "split_matches": split.tensor_to_filename == index["weight_map"],
        "python_split": split.tensor_to_filename,
    }


class TiedModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])
        self.head = torch.nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight


def cmd_accelerate_save(directory, max_size):
    from accelerate import Accelerator

    torch.manual_seed(5)
    model = TiedModel()
    size = int(max_size) if max_size.isdigit() else max_size
    Accelerator(cpu=True).save_model(model, directory, max_shard_size=size)
    return {"tensors": manifest(model.state_dict()), "files": sorted(os.listdir(directory))}


def main(argv):
    command, args = argv[1], argv[2:]
    handlers = {
        "manifest": cmd_manifest, "resave": cmd_resave, "write": cmd_write,
        "sharded": cmd_sharded, "accelerate-save": cmd_accelerate_save,
    }
    result = handlers[command](*args)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv)
