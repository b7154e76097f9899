"""Configuration: one validated settings object, read from the environment at start-up."""

from config.settings import (
    ENVIRONMENT_VARIABLES,
    Settings,
    SettingsError,
    export_metrics_directory,
    load_settings,
)

__all__ = ["ENVIRONMENT_VARIABLES", "Settings", "SettingsError", "export_metrics_directory", "load_settings"]
