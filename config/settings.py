"""One strict settings object; every knob has an env var ``FRAUDOPS_<NAME>``.

This module is the only one that reads ``os.environ``: flows, the CLI and the service all take their
configuration from :class:`Settings`. The service's gateway re-reads two of the fields per request
through :class:`LiveSettings` (so the API key can be rotated without a restart); a full
:class:`Settings` costs ~0.3 ms to build, too much for every request.
"""

from __future__ import annotations

import os
import secrets
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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

ENV_PREFIX = "FRAUDOPS_"


class Settings(BaseSettings):
    """Where state lives, how the service binds and what it accepts. Defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- state and registry ---------------------------------------------------------------------------
    home: Path = Field(Path(".fraudops"), description="Root of the lake, MLflow, Prefect and BentoML state.")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else SQLite under the home."
    )
    experiment: str = Field("fraudops", description="MLflow experiment name.")
    registered_model: str = Field("fraud-detector", description="MLflow registered model name.")
    bento_model: str = Field("fraud_detector", description="BentoML model name.")
    label_delay_days: int = Field(7, ge=0, le=60, description="Days before a label is known.")

    # --- the service ------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Service bind address.")
    port: int = Field(3000, ge=1, le=65535, description="Service port.")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Service worker processes (`fraudops serve/up --workers`); >1 needs the sqlite store.",
    )
    model_tag: str = Field(
        "fraud_detector:latest",
        description="BentoML model the service loads (set by `fraudops build`; inside a Bento, the one it packages).",
    )
    api_key: SecretStr | None = Field(
        None, description="When set, required on every route but health, metrics and docs (X-API-Key or Bearer)."
    )
    ui_demo: bool = Field(
        False,
        description="Open the UI at /ui without the API key, read-only: it scores without adding to the state or logs.",
    )
    max_body_mb: float = Field(32.0, gt=0, description="Request body limit in MB (413 above it).")
    max_file_rows: int = Field(200_000, ge=1, description="Rows per /score_file upload.")
    max_job_rows: int = Field(5_000_000, ge=1, description="Rows per /score_job task.")
    online_store: Literal["sqlite", "memory"] = Field(
        "sqlite", description="Service feature state: sqlite (shared by the workers) or memory (one process)."
    )
    state_db: Path | None = Field(
        None, description="SQLite online store file; default <state dir>/<model>-v<version>.sqlite."
    )
    state_dir: Path | None = Field(
        None, description="Directory of the per-version SQLite online stores; default $BENTOML_HOME/online_state."
    )
    feedback_db: Path | None = Field(
        None, description="Labels received through /feedback; default $BENTOML_HOME/feedback/feedback.sqlite."
    )
    monitor_dir: Path | None = Field(
        None, description="Prediction logs (JSON lines per worker); default $BENTOML_HOME/monitoring."
    )
    alert_capacity: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Alerts the analysts can investigate per day (k of CP@k): GET /alerts lists at most k cards a day.",
    )
    id_hash_salt: SecretStr | None = Field(
        None,
        description="Salt of the customer-id hash in logs, monitoring and artifacts; default a random one per home.",
    )

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
    def bentoml_home(self) -> Path:
        """Where BentoML keeps its store: ``BENTOML_HOME`` (exported by :meth:`apply_environment`), else ~/bentoml."""
        return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")

    @property
    def feedback_path(self) -> Path:
        """The service's SQLite log: transactions it scored and label events (``/feedback``, analysts' verdicts)."""
        return self.feedback_db or self.bentoml_home / "feedback" / "feedback.sqlite"

    @property
    def monitor_path(self) -> Path:
        """Directory of the service's prediction logs."""
        return self.monitor_dir or self.bentoml_home / "monitoring"

    def state_path(self, model_name: str, version: str) -> Path:
        """The SQLite online store of one model version (a tag like ``:latest`` would share it across versions)."""
        directory = self.state_dir or self.bentoml_home / "online_state"
        return self.state_db or directory / f"{model_name}-v{version}.sqlite"

    def hash_salt(self) -> str:
        """The customer-id hash salt: ``FRAUDOPS_ID_HASH_SALT``, else a random one kept in the BentoML home.

        Created on first use (32 random bytes, file mode 0600, written once even when several processes
        race), so every flow and service worker of one home hashes alike and no deployment shares a
        public default.
        """
        if self.id_hash_salt is not None:
            return self.id_hash_salt.get_secret_value()
        path = self.bentoml_home / "secrets" / "id_hash_salt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # atomic, and fails if another process won the race: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()

    def other_state_paths(self, model_name: str, version: str) -> list[Path]:
        """The SQLite online stores of the model's other versions (none when one explicit file is shared)."""
        if self.state_db is not None:
            return []
        own = self.state_path(model_name, version)
        return sorted(p for p in own.parent.glob(f"{model_name}-v*.sqlite") if p != own)

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
        quiet_environment()
        os.environ.setdefault("BENTOML_HOME", str(self.home_dir / "bentoml"))
        os.environ.setdefault("PREFECT_HOME", str(self.home_dir / "prefect"))
        os.environ.setdefault("MLFLOW_TRACKING_URI", self.tracking_uri)

    def child_environment(self, **overrides: str) -> dict[str, str]:
        """The environment for a child process (``bentoml build``, servers): this one plus ``overrides``.

        Keys of ``overrides`` are setting names (``model_tag``) or full variable names (``BENTOML_HOME``).
        """
        env = dict(os.environ)
        for key, value in overrides.items():
            env[key if key.isupper() else f"{ENV_PREFIX}{key.upper()}"] = value
        return env

    def serve_overrides(self, workers: int | None = None) -> dict[str, str]:
        """Environment overrides for ``bentoml serve`` with ``workers`` processes (default: the setting).

        Raises ValueError for several workers with the in-process store (see :meth:`_one_state`).
        """
        checked = self.model_copy(update={"workers": workers or self.workers})
        checked._one_state()
        return {f"{ENV_PREFIX}WORKERS": str(checked.workers)}

    @model_validator(mode="after")
    def _one_state(self) -> Settings:
        """Several workers share the online state only through the SQLite store."""
        if self.workers > 1 and self.online_store == "memory":
            raise ValueError(
                f"{self.workers} workers need FRAUDOPS_ONLINE_STORE=sqlite: with the memory store each worker "
                "would keep its own state and score against a part of the traffic"
            )
        return self


class LiveSettings:
    """The settings the service re-reads on every request (cheap: one environment lookup each)."""

    @staticmethod
    def api_key() -> str | None:
        """``FRAUDOPS_API_KEY`` as it is now (None when unset or empty): a rotated key applies without a restart."""
        return os.environ.get(f"{ENV_PREFIX}API_KEY") or None

    @staticmethod
    def ui_demo() -> bool:
        """``FRAUDOPS_UI_DEMO`` as it is now (true/1/yes/on): the read-only UI open without the key."""
        return (os.environ.get(f"{ENV_PREFIX}UI_DEMO") or "").strip().lower() in {"1", "true", "yes", "on"}

    @staticmethod
    def max_body_bytes() -> int:
        """``FRAUDOPS_MAX_BODY_MB`` (default :attr:`Settings.max_body_mb`) in bytes."""
        raw = os.environ.get(f"{ENV_PREFIX}MAX_BODY_MB")
        mb = float(raw) if raw else Settings.model_fields["max_body_mb"].default
        return int(mb * 1024 * 1024)


def quiet_environment() -> None:
    """Switch off the telemetry of every library in the stack (explicit settings win)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def current_settings() -> Settings:
    """Settings from the environment, exported (see :meth:`Settings.apply_environment`)."""
    settings = Settings()
    settings.apply_environment()
    return settings
