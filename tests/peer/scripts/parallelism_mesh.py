"""Accelerate's ParallelismConfig built from PARALLELISM_CONFIG_* variables,
for accel's DeviceMesh peer test (tests/peer/parallelism_mesh_peer_test.cpp).

Usage: parallelism_mesh.py CASES_JSON, a list of {variable: value} maps.
Prints after @@RESULT@@ one record per case: {"error": message} when
ParallelismConfig refuses it, else the mesh dim names and shape of _get_mesh,
the flattened dims build_device_mesh makes (name -> member dims) and every
rank's coordinates as init_device_mesh lays them out
(torch.arange(world).reshape(shape)), without a process group.
"""
import json
import os
import sys

import torch
from accelerate.parallelism_config import ParallelismConfig


def one(variables):
    for name in list(os.environ):
        if name.startswith("PARALLELISM_CONFIG_"):
            del os.environ[name]
    os.environ.update(variables)
    try:
        config = ParallelismConfig()
    except ValueError as e:
        return {"error": str(e)}
    mesh = config._get_mesh()
    names, shape = (list(mesh[0]), list(mesh[1])) if mesh else ([], [])
    flattened = []
    for flat, members in (
        ("dp", config.dp_dim_names),
        ("dp_shard_cp", config.dp_shard_cp_dim_names),
        ("dp_cp", config.dp_cp_dim_names),
    ):
        if members:
            flattened.append({"name": flat, "members": list(members)})
    world = config.total_size
    layout = torch.arange(world).reshape(shape) if shape else torch.arange(world)
    coords = []
    for rank in range(world):
        coords.append([int(i) for i in (layout == rank).nonzero()[0]] if shape else [])
    return {"names": names, "shape": shape, "flattened": flattened, "total_size": world, "coords": coords,
            "cp_comm_strategy": config.cp_handler.cp_comm_strategy if config.cp_handler else None}


def main():
    cases = json.loads(sys.argv[1])
    print("@@RESULT@@")
    print(json.dumps([one(c) for c in cases]))


if __name__ == "__main__":
    main()
