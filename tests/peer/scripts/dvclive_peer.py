"""Accelerate's DVCLiveTracker (through dvclive) as the peer of accel's.

  dvclive_peer.py run <sequence.json> <folder>    Accelerator(log_with="dvclive") in <folder>
                                                  replays the sequence
  dvclive_peer.py read <folder>                   every file under <folder>, and what dvclive
                                                  and dvc read from it

The sequence: {"project": name, "config": [[key, value], ...], "logs": [{"values":
[[key, value], ...], "step": n or null}, ...]}; a value {"float": "nan"} is that float.
Prints one JSON object after the line @@RESULT@@.
"""
import json
import os
import sys

os.environ["DVC_NO_ANALYTICS"] = "1"


def value(v):
    if isinstance(v, dict):
        return float(v["float"])
    return v


def run(sequence_file, folder):
    from accelerate import Accelerator

    with open(sequence_file) as f:
        sequence = json.load(f)
    os.chdir(folder)
    accelerator = Accelerator(cpu=True, log_with="dvclive")
    accelerator.init_trackers(sequence["project"], config={k: value(v) for k, v in sequence["config"]})
    for entry in sequence["logs"]:
        accelerator.log({k: value(v) for k, v in entry["values"]}, step=entry["step"])
    accelerator.end_training()
    return {"done": True}


def read(folder):
    from dvclive.serialize import load_yaml
    from dvclive.utils import parse_tsv

    files = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".dvc"]  # dvc's own, made by read_with_dvc
        for name in names:
            if name == ".dvcignore":
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                files[os.path.relpath(path, folder)] = f.read()
    dvclive = os.path.join(folder, "dvclive")
    result = {"files": files}
    params = os.path.join(dvclive, "params.yaml")
    if os.path.exists(params):
        result["params"] = load_yaml(params)
    metrics_dir = os.path.join(dvclive, "plots", "metrics")
    result["histories"] = {
        os.path.relpath(os.path.join(root, name), metrics_dir): parse_tsv(os.path.join(root, name))
        for root, _, names in os.walk(metrics_dir)
        for name in names
    }
    if os.path.exists(os.path.join(folder, "dvc.yaml")):
        result["dvc"] = read_with_dvc(folder)
    return result


def read_with_dvc(folder):
    """What `dvc metrics show` and `dvc params show` read, through dvc's API
    (in a DVC repository made for it without Git)."""
    import dvc.api
    from dvc.repo import Repo

    if not os.path.exists(os.path.join(folder, ".dvc")):
        Repo.init(folder, no_scm=True)
    return {
        "metrics": dvc.api.metrics_show(repo=folder),
        "params": dvc.api.params_show(repo=folder),
    }


if __name__ == "__main__":
    if sys.argv[1] == "run":
        result = run(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "read":
        result = read(sys.argv[2])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
    print("@@RESULT@@")
    print(json.dumps(result))
