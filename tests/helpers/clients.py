"""Real MLflow clients, run in child processes so each has its own tracking URI and env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DIRECT_CLIENT = r'''
import json, os, sys
import mlflow
from mlflow.pyfunc import PythonModel

uri, exp_name, n_runs, model_name, workdir = sys.argv[1:6]
mlflow.set_tracking_uri(uri)

class AddN(PythonModel):
    def __init__(self, n):
        self.n = n
    def predict(self, context, model_input):
        return model_input + self.n

exp_id = mlflow.set_experiment(exp_name).experiment_id
out = {"experiment_id": exp_id, "runs": [], "versions": []}
for i in range(int(n_runs)):
    path = os.path.join(workdir, f"note-{i}.txt")
    with open(path, "w") as fh:
        fh.write(f"run {i} of {exp_name}")
    with mlflow.start_run() as run:
        mlflow.log_param("i", i)
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (i + step + 1), step=step)
        mlflow.set_tag("origin", exp_name)
        mlflow.log_artifact(path)
        entry = {"run_id": run.info.run_id, "artifact": os.path.basename(path)}
        if model_name != "-":
            info = mlflow.pyfunc.log_model(name="model", python_model=AddN(i + 1),
                                           registered_model_name=model_name)
            entry["model_id"] = info.model_id
            entry["version"] = info.registered_model_version
            out["versions"].append({"version": info.registered_model_version, "add": i + 1})
    out["runs"].append(entry)
print("RESULT " + json.dumps(out))
'''


def start_training_client(uri: str, exp_name: str, n_runs: int, model_name: str | None,
                          workdir: Path) -> subprocess.Popen:
    """A training script in a child process: runs with a param, metric steps, a tag, an
    artifact and (with `model_name`) a registered pyfunc model each, logged to `uri`."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    return subprocess.Popen(
        [sys.executable, "-c", DIRECT_CLIENT, uri, exp_name, str(n_runs), model_name or "-",
         str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=str(workdir))


def run_direct_client(store: Path, exp_name: str, n_runs: int, model_name: str | None,
                      workdir: Path) -> dict:
    """Log runs (and registered pyfunc models) by opening the store folder directly, as a
    training script does with a file: tracking URI: every meta.yaml gets absolute paths."""
    return result_of(start_training_client(store.as_uri(), exp_name, n_runs, model_name,
                                           workdir))


READ_THROUGH_SERVER = r'''
import json, sys, tempfile
import mlflow, pandas as pd
from mlflow import MlflowClient

url, expected = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(url)
client = MlflowClient(url)
report = {"artifacts": {}, "predictions": {}}
for run_id, name in expected["artifacts"].items():
    listed = [a.path for a in client.list_artifacts(run_id)]
    dst = tempfile.mkdtemp()
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=dst)
    report["artifacts"][run_id] = {"listed": listed, "content": open(path).read()}
for name, version in expected["models"]:
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    predicted = model.predict(pd.DataFrame({"x": [10]}))
    report["predictions"][f"{name}/{version}"] = predicted["x"].tolist()
print("RESULT " + json.dumps(report))
'''


def read_through_server(url: str, artifacts: dict[str, str], models: list[tuple[str, str]]) -> dict:
    """List and download each run's artifact and load each `models:/name/version` with pyfunc,
    all through the server at `url` (never the folder)."""
    res = subprocess.run(
        [sys.executable, "-c", READ_THROUGH_SERVER, url,
         json.dumps({"artifacts": artifacts, "models": models})],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


REGISTER_CLIENT = r'''
import json, os, sys, tempfile, time
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

url, name, label = sys.argv[1], sys.argv[2], sys.argv[5]
n, start_at = int(sys.argv[3]), float(sys.argv[4])
client = MlflowClient(url)
mlflow.set_tracking_uri(url)
exp = mlflow.set_experiment(f"register-{label}").experiment_id
with mlflow.start_run() as run:
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "weights.txt"), "w") as fh:
        fh.write(label)
    mlflow.log_artifacts(folder, "model")
time.sleep(max(0.0, start_at - time.time()))
out = []
for i in range(n):
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id,
                                     tags={"label": label, "i": str(i)})
    out.append({"version": mv.version, "run_id": run.info.run_id, "i": i})
print("RESULT " + json.dumps(out))
'''


def start_register_client(url: str, name: str, n: int, start_at: float,
                          label: str) -> subprocess.Popen:
    """Register `n` versions of model `name` through the server at `url`, starting at
    `start_at` (epoch seconds), so clients on several hosts can start at the same instant."""
    return subprocess.Popen([sys.executable, "-c", REGISTER_CLIENT, url, name, str(n),
                             str(start_at), label], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def result_of(proc: subprocess.Popen, timeout: float = 300) -> object:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])
