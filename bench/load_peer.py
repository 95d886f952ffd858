"""Python side of bench/load.sh: writes the checkpoint, evicts it from the
page cache, and times the Python peers' loads.

  load_peer.py write DIR SIZE        a GPT-2-shaped bf16 checkpoint in shards
  load_peer.py evict DIR             drop the shards' pages; prints the share
                                     still resident afterwards (mincore)
  load_peer.py safetensors DIR DEV   safetensors.torch.load_file per shard
  load_peer.py transformers DIR DEV  AutoModelForCausalLM.from_pretrained(
                                     device_map=DEV, dtype=bfloat16)

Timed commands print "<name> <seconds> <bytes> <GB/s>", CUDA initialised
before the clock starts and synchronised before it stops.
SIZE: tiny (a few MB, for checking the script), 1b, 3b (about 6.6 GB).
"""
import ctypes
import json
import mmap
import os
import sys
import time
from pathlib import Path

import torch

SIZES = {  # n_embd, n_layer, n_head, vocab, positions
    "tiny": (128, 2, 4, 1000, 128),
    "1b": (2048, 20, 16, 50257, 1024),
    "3b": (2560, 40, 20, 50257, 1024),
}
SHARD_BYTES = 2 * 10**9


def shards(folder):
    return sorted(Path(folder).glob("*.safetensors"))


def total_bytes(folder):
    with open(Path(folder) / "model.safetensors.index.json") as f:
        return json.load(f)["metadata"]["total_size"]


def write(folder, size):
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    n_embd, n_layer, n_head, vocab, positions = SIZES[size]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, vocab_size=vocab, n_positions=positions, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
                        dtype="bfloat16")
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    # The names and shapes save_pretrained writes (the head is tied to wte).
    state = [(k, v) for k, v in model.state_dict().items() if k != "lm_head.weight"]
    groups, current, current_bytes = [], [], 0
    for name, t in state:
        nbytes = t.numel() * 2
        if current and current_bytes + nbytes > SHARD_BYTES:
            groups.append(current)
            current, current_bytes = [], 0
        current.append((name, t.shape))
        current_bytes += nbytes
    groups.append(current)
    weight_map, total = {}, 0
    generator = torch.Generator().manual_seed(0)
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in group:
            tensors[name] = torch.empty(shape, dtype=torch.bfloat16).normal_(0, 0.02, generator=generator)
            weight_map[name] = file
            total += tensors[name].numel() * 2
        save_file(tensors, folder / file, metadata={"format": "pt"})
        del tensors
    with open(folder / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    config.save_pretrained(folder)


def resident_share(path):
    """The share of the file's pages in the page cache (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            buf = (ctypes.c_char * size).from_buffer(mm)
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            resident = sum(v & 1 for v in vec)
            del buf
        finally:
            mm.close()
    return resident / pages


def evict(folder):
    files = shards(folder)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    share = max(resident_share(p) for p in files)
    print(f"resident_after_evict {share:.4f}")


def start(device):
    if device.startswith("cuda"):
        torch.empty(1, device=device)
        torch.cuda.synchronize()
    return time.perf_counter()


def stop(name, device, t0, nbytes):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"{name} {seconds:.3f} {nbytes} {nbytes / seconds / 1e9:.3f}")


def load_safetensors(folder, device):
    from safetensors.torch import load_file

    t0 = start(device)
    loaded = [load_file(p, device=device) for p in shards(folder)]
    # On the CPU load_file may leave tensors backed by the mapping: touch
    # one byte of every page so the time includes reading the file.
    if device == "cpu":
        for part in loaded:
            for t in part.values():
                t.reshape(-1).view(torch.uint8)[::4096].sum()
    stop("safetensors", device, t0, total_bytes(folder))


def load_transformers(folder, device):
    import logging
    import warnings

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    t0 = start(device)
    model = AutoModelForCausalLM.from_pretrained(folder, device_map=device, dtype=torch.bfloat16)
    stop("transformers", device, t0, total_bytes(folder))
    assert next(model.parameters()).device.type == torch.device(device).type


def main():
    command, folder = sys.argv[1], sys.argv[2]
    if command == "write":
        write(folder, sys.argv[3])
    elif command == "evict":
        evict(folder)
    elif command == "safetensors":
        load_safetensors(folder, sys.argv[3])
    elif command == "transformers":
        load_transformers(folder, sys.argv[3])
    else:
        sys.exit(f"unknown command {command!r}: expected write, evict, safetensors or transformers")


if __name__ == "__main__":
    main()
