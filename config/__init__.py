"""Configuration: one validated settings object, read from the environment at start-up."""

from config.settings import ENVIRONMENT_VARIABLES, Settings, SettingsError, load_settings

__all__ = ["ENVIRONMENT_VARIABLES", "Settings", "SettingsError", "load_settings"]
