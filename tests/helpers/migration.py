"""A file store for the migration tests, written by a real MLflow client (file: URIs, no
server): experiments (one deleted), runs with params, tags, metric histories, an artifact and
a dataset input, a deleted run, a logged model, a trace, a registered model with three versions
and an alias; plus the guard's and the sync clients' folders, which are no MLflow entities."""

from __future__ import annotations

import os
from pathlib import Path

from guard.core.layout import COORDINATION
from guard.core.store import init_store, store_uri

MODEL_NAME = "digits"


def build_store(path: Path) -> Path:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import warnings

    import mlflow
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    init_store(path)  # the guard's way: the Default experiment under mlflow-artifacts:/
    uri = store_uri(path)
    warnings.filterwarnings("ignore", category=FutureWarning)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    exp = client.create_experiment("train", tags={"team": "vision"})
    run_ids = []
    for i in range(3):
        run = client.create_run(exp, run_name=f"run-{i}", tags={"seed": str(i)})
        rid = run.info.run_id
        now = 1_700_000_000_000 + i
        client.log_batch(
            rid,
            metrics=[Metric("loss", 1.0 / (s + 1), now + s, s) for s in range(5)]
            + [Metric("acc", 0.5 + s / 10, now + s, s) for s in range(3)],
            params=[Param("lr", str(0.1 * (i + 1))), Param("layers", "3")],
            tags=[RunTag("kind", "baseline")])
        client.log_text(rid, f"notes {i}", "notes.txt")
        run_ids.append(rid)
    ds = MetaDataset(HTTPDatasetSource("https://example.com/digits.csv"), name="digits",
                     digest="abc123")
    client.log_inputs(run_ids[0], [DatasetInput(ds._to_mlflow_entity())])
    for rid in run_ids[:2]:
        client.set_terminated(rid)
    client.delete_run(run_ids[2])

    gone = client.create_experiment("abandoned")
    client.set_terminated(client.create_run(gone).info.run_id)
    client.delete_experiment(gone)

    # a run in the Default experiment: its artifact URI is the portable mlflow-artifacts:/...
    default_run = client.create_run("0", run_name="portable")
    client.log_param(default_run.info.run_id, "where", "default")

    model = client.create_logged_model(exp, name="net", source_run_id=run_ids[0],
                                       params={"hidden": "64"}, tags={"stage": "dev"})
    client.finalize_logged_model(model.model_id, "READY")

    # traces are exported to the global tracking URI, synchronously when told so
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    mlflow.set_tracking_uri(uri)
    try:
        for name in ("predict", "explain"):
            span = client.start_trace(name, experiment_id=exp)
            client.end_trace(span.trace_id)
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", None)

    client.create_registered_model(MODEL_NAME, tags={"owner": "ml"})
    for rid in run_ids[:2] + [run_ids[0]]:
        client.create_model_version(MODEL_NAME, f"runs:/{rid}/model", run_id=rid,
                                    tags={"from": rid[:8]})
    client.set_registered_model_alias(MODEL_NAME, "champion", "2")

    # not MLflow's: the guard's coordination folder, sync clients' folders
    (path / COORDINATION / "tombstones").mkdir(parents=True)
    (path / ".stfolder").mkdir()
    (path / "models" / "@eaDir").mkdir()
    return path
