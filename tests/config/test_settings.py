"""The settings object: environment names, derived paths, and the per-home hash salt."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config.settings import LiveSettings, Settings


def test_service_paths_follow_the_bentoml_home_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    settings = Settings()
    assert settings.feedback_path == tmp_path / "bentoml" / "feedback" / "feedback.sqlite"
    assert (
        settings.state_path("fraud_detector", "3") == tmp_path / "bentoml" / "online_state" / "fraud_detector-v3.sqlite"
    )
    monkeypatch.setenv("FRAUDOPS_FEEDBACK_DB", str(tmp_path / "fb.sqlite"))
    monkeypatch.setenv("FRAUDOPS_ONLINE_STORE", "memory")
    settings = Settings()
    assert settings.feedback_path == tmp_path / "fb.sqlite" and settings.online_store == "memory"
    monkeypatch.setenv("FRAUDOPS_ONLINE_STORE", "redis")
    with pytest.raises(ValueError, match="online_store"):
        Settings()


def test_the_hash_salt_is_random_per_home_private_and_stable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FRAUDOPS_ID_HASH_SALT", raising=False)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "a"))
    first = Settings().hash_salt()
    assert len(first) == 64 and first != "fraudops" and Settings().hash_salt() == first  # stable within a home
    salt_file = tmp_path / "a" / "secrets" / "id_hash_salt"
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "b"))
    assert Settings().hash_salt() != first  # another home, another salt
    monkeypatch.setenv("FRAUDOPS_ID_HASH_SALT", "mine")
    assert Settings().hash_salt() == "mine" and "mine" not in repr(Settings())  # a secret: not in reprs


def test_live_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDOPS_API_KEY", raising=False)
    monkeypatch.delenv("FRAUDOPS_MAX_BODY_MB", raising=False)
    assert LiveSettings.api_key() is None and LiveSettings.max_body_bytes() == 32 * 1024 * 1024
    monkeypatch.setenv("FRAUDOPS_API_KEY", "rotated")
    monkeypatch.setenv("FRAUDOPS_MAX_BODY_MB", "0.5")
    assert LiveSettings.api_key() == "rotated" and LiveSettings.max_body_bytes() == 512 * 1024


def test_other_state_paths_are_the_models_other_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FRAUDOPS_STATE_DB", raising=False)
    monkeypatch.setenv("FRAUDOPS_STATE_DIR", str(tmp_path))
    for name in ("fraud_detector-v1.sqlite", "fraud_detector-v2.sqlite", "other-v1.sqlite", "fraud_detector-v3.sqlite"):
        (tmp_path / name).touch()
    settings = Settings()
    assert settings.state_path("fraud_detector", "2") == tmp_path / "fraud_detector-v2.sqlite"
    assert [p.name for p in settings.other_state_paths("fraud_detector", "2")] == [
        "fraud_detector-v1.sqlite",
        "fraud_detector-v3.sqlite",
    ]
    monkeypatch.setenv("FRAUDOPS_STATE_DB", str(tmp_path / "one.sqlite"))  # one file for every version
    assert Settings().other_state_paths("fraud_detector", "2") == []
