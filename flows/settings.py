"""One strict settings object; every knob has an env var ``FRAUDOPS_<NAME>``."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Telemetry/analytics switches of the stack (this project never phones home).
QUIET_ENV = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


class Settings(BaseSettings):
    """Where state lives and how the service binds. Defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="FRAUDOPS_", frozen=True, extra="forbid")

    home: Path = Field(Path(".fraudops"), description="Root of the lake, MLflow, Prefect and BentoML state.")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else SQLite under the home."
    )
    experiment: str = Field("fraudops", description="MLflow experiment name.")
    registered_model: str = Field("fraud-detector", description="MLflow registered model name.")
    bento_model: str = Field("fraud_detector", description="BentoML model name.")
    label_delay_days: int = Field(7, ge=0, le=60, description="Days before a label is known.")
    host: str = Field("127.0.0.1", description="Service bind address.")
    port: int = Field(3000, ge=1, le=65535, description="Service port.")

    @property
    def home_dir(self) -> Path:
        """The home directory, user-expanded and absolute."""
        return self.home.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the setting, else MLFLOW_TRACKING_URI, else SQLite under the home."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def data_docs_dir(self) -> Path:
        """The GX Data Docs site (HTML, with its stored results) under the home."""
        return self.home_dir / "gx" / "data_docs"

    @property
    def artifact_root(self) -> Path:
        """Directory for MLflow artifacts under the home."""
        return self.home_dir / "mlartifacts"

    def simulated_path(self, start: date, days: int, customers: int, seed: int, drift: tuple[str, ...] = ()) -> Path:
        """Inbox file for a simulated world (same parameters, same file: reruns are idempotent)."""
        suffix = "".join(f"-{name}" for name in drift)
        return self.home_dir / "inbox" / f"simulated-{start}-{days}d-{customers}c-seed{seed}{suffix}.parquet"

    def apply_environment(self) -> None:
        """Export state locations before Prefect, MLflow or BentoML are imported (explicit env wins)."""
        self.home_dir.mkdir(parents=True, exist_ok=True)
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("BENTOML_HOME", str(self.home_dir / "bentoml"))
        os.environ.setdefault("PREFECT_HOME", str(self.home_dir / "prefect"))
        os.environ.setdefault("MLFLOW_TRACKING_URI", self.tracking_uri)


def current_settings() -> Settings:
    """Settings from the environment, exported (see :meth:`Settings.apply_environment`)."""
    settings = Settings()
    settings.apply_environment()
    return settings
