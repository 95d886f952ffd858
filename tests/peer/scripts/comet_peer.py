"""comet_ml as the peer of accel's comet_ml tracker: the archives are read
with comet_ml's own code, and Accelerate's CometMLTracker writes the same
run for comparison.

  comet_peer.py run <sequence.json> <folder>   Accelerator(log_with="comet_ml"), offline
                                               (COMET_START_ONLINE=false), replays the
                                               sequence; the archive goes in <folder>
  comet_peer.py read <archive.zip>             what comet_ml reads from the archive:
                                               `comet offline --csv` (its archive viewer)
                                               and the offline sender of `comet upload`,
                                               run up to the requests it would send
  comet_peer.py zip <archive.zip>              Python's zipfile: testzip() (the first entry whose
                                               CRC-32 fails, or null) and each entry's fields
  comet_peer.py floats <file>                  lines "<16 hex digits of a double> <text>":
                                               the lines whose text is not repr() of it

The sequence: {"project": name, "config": [[key, value], ...], "logs": [{"values":
[[key, value], ...], "step": n or null}, ...]}; a value {"float": "nan"} is that float.
Prints one JSON object after the line @@RESULT@@.
"""
import csv
import io
import json
import logging
import math
import os
import shutil
import struct
import sys
import zipfile


def value(v):
    if isinstance(v, dict) and set(v) == {"float"}:
        return float(v["float"])
    if isinstance(v, dict):
        return {k: value(x) for k, x in v.items()}
    return v


def plain(v):
    """JSON without NaN or infinities (which strict readers refuse)."""
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def run(sequence_file, folder):
    os.environ["COMET_START_ONLINE"] = "false"
    os.environ["COMET_OFFLINE_DIRECTORY"] = folder
    from accelerate import Accelerator

    with open(sequence_file) as f:
        sequence = json.load(f)
    accelerator = Accelerator(cpu=True, log_with="comet_ml")
    accelerator.init_trackers(sequence["project"], config={k: value(v) for k, v in sequence["config"]})
    for entry in sequence["logs"]:
        accelerator.log({k: value(v) for k, v in entry["values"]}, step=entry["step"])
    accelerator.end_training()
    archives = [name for name in os.listdir(folder) if name.endswith(".zip")]
    return {"archives": archives}


class Errors(logging.Handler):
    """What comet_ml logs at WARNING and above: its readers log a failure
    and go on. Each entry is [level, message]; an exception a reader raised
    is an entry of level "RAISED"."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        text = record.getMessage()
        if record.exc_info:
            text += ": " + repr(record.exc_info[1])
        self.messages.append([record.levelname, text])


def read_with_comet_offline(archive):
    """`comet offline --csv --raw-size` on the archive: comet_ml's viewer of
    offline archives (comet_ml/scripts/comet_offline.py)."""
    from comet_ml.scripts import comet_offline

    errors = Errors()
    logger = logging.getLogger("comet_ml")
    logger.addHandler(errors)
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        comet_offline.main(["--csv", "--raw-size", archive])
    except Exception as e:  # a file that is not an archive: zipfile refuses it
        errors.messages.append(["RAISED", repr(e)])
    finally:
        sys.stdout = saved
        logger.removeHandler(errors)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    header, rows = (rows[0], rows[1:]) if rows else ([], [])
    return {"header": header, "rows": rows, "errors": errors.messages}


class Recorder:
    """Stands where the offline sender's REST clients stand: records each
    request it would send to Comet instead of sending it."""

    def __init__(self, calls):
        self._calls = calls

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self._calls.append((name, args, kwargs))

        return call


def read_with_offline_sender(archive):
    """The upload path of `comet upload`: comet_ml unzips the archive (its
    CRCs checked), validates experiment.json and every message against its
    JSON schemas (raising, as in comet_ml's own tests) and turns them into
    the batches it would send; the requests are recorded, not sent."""
    from comet_ml.offline import OfflineSender, unzip_offline_archive

    errors = Errors()
    logger = logging.getLogger("comet_ml")
    logger.addHandler(errors)
    calls = []
    result = {}
    directory = None
    try:
        directory = unzip_offline_archive(archive)
        sender = OfflineSender(
            api_key="0" * 32,
            offline_dir=directory,
            raise_validation_error_for_tests=True,
            connection=Recorder(calls),
            rest_api_client=Recorder(calls),
        )
        result["experiment"] = {
            "id": sender.experiment_id,
            "project": sender.metadata_project_name,
            "workspace": sender.metadata_workspace,
            "start_time": sender.start_time,
            "stop_time": sender.stop_time,
            "tags": sender.tags,
            "resume_strategy": sender.resume_strategy,
            "user_provided_experiment_key": sender.user_provided_experiment_key,
            "customer_error_reported": sender.customer_error_reported,
            "customer_error_message": sender.customer_error_message,
        }
        sender._send_messages()
    except Exception as e:
        errors.messages.append(["RAISED", repr(e)])
    finally:
        logging.getLogger("comet_ml").removeHandler(errors)
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
    metrics, params, others, failures = [], [], [], []
    for name, args, kwargs in calls:
        if name == "log_metrics_batch":
            for item in kwargs["items"]:
                m = item.message
                metrics.append({"name": m.metric["metricName"], "value": m.metric["metricValue"],
                                "step": m.metric["step"], "id": m.message_id})
        elif name == "log_parameters_batch":
            for item in kwargs["items"]:
                p = item.message.param
                params.append({"name": p["paramName"], "value": p["paramValue"], "step": p["step"],
                               "source": p["source"]})
        elif name == "log_experiment_other":
            others.append([kwargs["key"], kwargs["value"]])
        elif name in ("update_experiment_error_status", "report"):
            failures.append([name, repr(kwargs)])
    metrics.sort(key=lambda m: m["id"])
    result.update({"metrics": metrics, "params": params, "others": others,
                   "failures": failures, "errors": errors.messages})
    return result


def read(archive):
    result = {}
    try:  # the entries as Python's zipfile reads them
        with zipfile.ZipFile(archive) as z:
            result["names"] = sorted(z.namelist())
            lines = z.read("messages.json").decode().splitlines()
            result["lines"] = lines
            result["messages"] = [json.loads(line) for line in lines]
            result["experiment_text"] = z.read("experiment.json").decode()
    except Exception as e:
        result["raw_error"] = repr(e)
    result["comet_offline"] = read_with_comet_offline(archive)
    result["offline_sender"] = read_with_offline_sender(archive)
    return result


def check_zip(archive):
    try:
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip()
            entries = {info.filename: {"size": info.file_size, "crc": info.CRC, "method": info.compress_type,
                                       "utf8": bool(info.flag_bits & 0x800)} for info in z.infolist()}
        return {"bad": bad, "entries": entries}
    except Exception as e:
        return {"error": repr(e)}


def floats(path):
    wrong = []
    count = 0
    with open(path) as f:
        for line in f:
            bits, text = line.split()
            x = struct.unpack("<d", bytes.fromhex(bits)[::-1])[0]
            count += 1
            if repr(x) != text or json.dumps(x) != text:
                wrong.append([bits, text, repr(x)])
    return {"count": count, "wrong": wrong[:20]}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "run":
        result = run(sys.argv[2], sys.argv[3])
    elif command == "read":
        result = read(sys.argv[2])
    elif command == "zip":
        result = check_zip(sys.argv[2])
    elif command == "floats":
        result = floats(sys.argv[2])
    else:
        sys.exit(f"unknown command {command!r}")
    print("@@RESULT@@")
    print(json.dumps(plain(result)), flush=True)
    # Past comet_ml's exit hooks, which would print after the result.
    os._exit(0)
