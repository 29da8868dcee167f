"""Configuration: the one Settings object (see :mod:`config.settings`)."""

from config.settings import DEFAULT_STORAGE_PROFILE, Settings, StorageProfile

__all__ = ["DEFAULT_STORAGE_PROFILE", "Settings", "StorageProfile"]
