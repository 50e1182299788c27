"""Typed configuration: a TOML file plus command-line overrides, validated completely at load.

One section class per table, each in its own module (`model.py` is `[model]`, ...); `root.py`
assembles them, `loader.py` reads and overrides, `problems.py` words the errors.
"""

from edgecam.config.loader import load_config, merge_overrides, parse_overrides, read_toml
from edgecam.config.root import DEFAULT_CONFIG_PATH, EdgecamConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "EdgecamConfig",
    "load_config",
    "merge_overrides",
    "parse_overrides",
    "read_toml",
]
