"""MLflow's own Python client and a failing stand-in server, for accel's MLflow tracker.

  mlflow_peer.py read <tracking_uri> <run_id>     the run as mlflow's client reads it
  mlflow_peer.py failing_server <port_file>       an HTTP server on loopback that answers
                                                  every MLflow call with 500 (and writes
                                                  its port to port_file; runs until killed)

`read` prints one JSON object after the line @@RESULT@@. Non-finite numbers
are written as the strings "nan", "inf", "-inf" (JSON has no such numbers).
"""
import http.server
import json
import math
import os
import sys


def number(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def read(uri, run_id):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    histories = {}
    for key in run.data.metrics:
        points = client.get_metric_history(run_id, key)
        points.sort(key=lambda m: (m.step, m.timestamp))
        histories[key] = [[m.step, number(m.value), m.timestamp] for m in points]
    return {
        "experiment": experiment.name,
        "experiment_tags": dict(experiment.tags),
        "status": run.info.status,
        "run_name": run.info.run_name,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": histories,
    }


class Failing(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error_code": "INTERNAL_ERROR", "message": "the store is broken"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass


def failing_server(port_file):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "read":
        result = read(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "failing_server":
        failing_server(sys.argv[2])
        sys.exit(0)
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
    print("@@RESULT@@")
    print(json.dumps(result))
