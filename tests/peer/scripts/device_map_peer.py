"""Python side of the device-map peer test (tests/peer/device_map_peer_test.cpp).

  device_map_peer.py CASES.json

CASES.json: {"model": TREE, "cases": [{"max_memory": {...}, "no_split": [...],
"dtype": "float16" or null, "fallback": bool}, ...]}. TREE lists the C++ model's modules, parents
first: {"path", "class", "params": [{"name", "shape", "dtype", "tie"}],
"buffers": [...]}; tensors with the same "tie" are one tensor. The script
builds that tree as PyTorch modules on the meta device (one class per class
name) and prints, after @@RESULT@@, the list of maps Accelerate's
infer_auto_device_map gives for the cases, GPUs written "cuda:N" (max_memory
keys that are digits are GPU indices, as Accelerate's ints).
"""
import json
import logging
import sys
import warnings

import torch
from accelerate.utils import infer_auto_device_map

logging.disable(logging.WARNING)
warnings.simplefilter("ignore")


def build(tree):
    classes = {}
    modules = {}
    tied = {}

    def tensor(spec):
        return torch.empty(spec["shape"], dtype=getattr(torch, spec["dtype"]), device="meta")

    for node in tree:
        name = node["class"]
        if name not in classes:
            classes[name] = type(name, (torch.nn.Module,), {})
        module = classes[name]()
        for p in node["params"]:
            key = p["tie"]
            if key not in tied:
                t = tensor(p)
                tied[key] = torch.nn.Parameter(t, requires_grad=t.is_floating_point())
            module.register_parameter(p["name"], tied[key])
        for b in node["buffers"]:
            module.register_buffer(b["name"], tensor(b))
        path = node["path"]
        modules[path] = module
        if path:
            parent, _, child = path.rpartition(".")
            modules[parent].add_module(child, module)
    return modules[""]


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    model = build(spec["model"])
    maps = []
    for case in spec["cases"]:
        max_memory = {(int(k) if k.isdigit() else k): v for k, v in case["max_memory"].items()}
        device_map = infer_auto_device_map(
            model,
            max_memory=max_memory,
            no_split_module_classes=case["no_split"],
            dtype=getattr(torch, case["dtype"]) if case["dtype"] else None,
            fallback_allocation=case["fallback"],
        )
        maps.append({k: (f"cuda:{v}" if isinstance(v, int) else v) for k, v in device_map.items()})
    print("@@RESULT@@")
    print(json.dumps(maps))


if __name__ == "__main__":
    main()
