"""Layer 1: typed, validated inputs (hardware, profiles, apps) and their YAML loader."""

from harpagon.config.loader import ConfigError, ConfigIssue, load_workload
from harpagon.config.schema import App, Hardware, Module, Profile, ProfileRow, Workload

__all__ = [
    "App", "ConfigError", "ConfigIssue", "Hardware", "Module", "Profile", "ProfileRow", "Workload",
    "load_workload",
]
