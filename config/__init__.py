"""Configuration: the one Settings object (see :mod:`config.settings`)."""

from config.settings import (
    DEFAULT_APP,
    DEFAULT_STORAGE_PROFILE,
    AppProfile,
    Settings,
    StorageProfile,
)

__all__ = ["DEFAULT_APP", "DEFAULT_STORAGE_PROFILE", "AppProfile", "Settings", "StorageProfile"]
