"""Reads accel's TensorBoard event files back with TensorBoard's own code.

  tensorboard_read.py read <logdir>                    every run under logdir
  tensorboard_read.py histogram <values.json>          torch's make_histogram of the values
  tensorboard_read.py serve <logdir> <run> <tag>       TensorBoard's server, asked over HTTP

Prints one JSON object after the line @@RESULT@@. Non-finite numbers are
written as the strings "nan", "inf", "-inf" (JSON has no such numbers).
"""
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def number(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def read_run(path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    run = {"scalars": {}, "texts": {}, "histograms": {}, "hparams": None}
    for tag in tags["scalars"]:
        run["scalars"][tag] = [[e.step, number(e.value)] for e in acc.Scalars(tag)]
    for tag in tags["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "text":
            run["texts"][tag] = [
                [e.step, tensor_util.make_ndarray(e.tensor_proto).reshape(-1)[0].decode("utf-8")]
                for e in acc.Tensors(tag)
            ]
    for tag in tags["histograms"]:
        run["histograms"][tag] = [
            {
                "step": e.step,
                "min": e.histogram_value.min,
                "max": e.histogram_value.max,
                "num": e.histogram_value.num,
                "sum": e.histogram_value.sum,
                "sum_squares": e.histogram_value.sum_squares,
                "bucket_limit": list(e.histogram_value.bucket_limit),
                "bucket": list(e.histogram_value.bucket),
            }
            for e in acc.Histograms(tag)
        ]
    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:
        content = {}
    if content:
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
        values = {}
        for name, value in start.session_start_info.hparams.items():
            kind = value.WhichOneof("kind")
            values[name] = getattr(value, kind)
        run["hparams"] = {
            "values": values,
            "declared": [info.name for info in experiment.experiment.hparam_infos],
            "status": int(end.session_end_info.status),
        }
    return run


def read(logdir):
    runs = {}
    for folder, _, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            runs[os.path.relpath(folder, logdir)] = read_run(folder)
    return {"runs": runs}


def histogram(values_file):
    import numpy as np
    from torch.utils.tensorboard.summary import make_histogram

    with open(values_file) as f:
        values = np.array(json.load(f), dtype=np.float64)
    # SummaryWriter's default bins ("tensorflow"), as add_histogram uses them.
    edges = []
    v = 1e-12
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    bins = [-x for x in edges[::-1]] + [0] + edges
    h = make_histogram(values[np.isfinite(values)], bins)
    return {"bucket_limit": list(h.bucket_limit), "bucket": list(h.bucket), "num": h.num, "sum": h.sum}


def serve(logdir, run, tag):
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [tensorboard, "--logdir", logdir, "--port", "0", "--host", "127.0.0.1", "--reload_interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        address = None
        seen = []
        deadline = time.time() + 120
        while address is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if found:
                address = found.group(1)
        if address is None:
            return {"error": "TensorBoard printed no address:\n" + "".join(seen)}
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        points = []
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{address}/data/plugin/scalars/scalars?{query}", timeout=10) as r:
                    points = json.load(r)
            except urllib.error.HTTPError:
                points = []  # the run is not loaded yet
            if points:
                break
            time.sleep(0.5)
        with urllib.request.urlopen(f"{address}/data/runs", timeout=10) as r:
            runs = json.load(r)
        return {"address": address, "runs": runs, "points": [[p[1], number(p[2])] for p in points]}
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "read":
        result = read(sys.argv[2])
    elif mode == "histogram":
        result = histogram(sys.argv[2])
    else:
        result = serve(sys.argv[2], sys.argv[3], sys.argv[4])
    print("@@RESULT@@")
    print(json.dumps(result))
