"""Helpers of the edge-limit and secrets modules (issue 10 items 1 and 7): a server configuration
that differs from the shipped one in a few keys."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import REPO_ROOT


def config_copy(root: Path, **edits: dict[str, Any]) -> Path:
    """A copy of config/ under `root` (personalities beside it, as the loader expects) with each
    `edits[file_stem]` merged into that YAML file (nested dicts merge, other values replace)."""
    config = root / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (root / "personalities").symlink_to(REPO_ROOT / "personalities")
    for stem, changes in edits.items():
        path = config / f"{stem}.yaml"
        data = yaml.safe_load(path.read_text()) or {}
        path.write_text(yaml.safe_dump(_merge(data, changes), sort_keys=False))
    return config


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
