"""The one settings object (``FRAUDOPS_*``), at the bottom of the import graph: everything reads it."""

from config.settings import QUIET_ENV, LiveSettings, Settings, current_settings

__all__ = ["QUIET_ENV", "LiveSettings", "Settings", "current_settings"]
