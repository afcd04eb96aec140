"""mlflow-sync-guard: one supervised MLflow server per machine over a synced file store."""

__version__ = "0.1.0"
