"""What is on disk: a Triton-style model repository, or one model directory.

A repository is `ROOT/<model-name>/<version>/{model.onnx,config.json}`: versions are positive
integers; files and directories whose names start with `.` are ignored (copy a new version in
under a dot-name, then rename it into place). There the directory names are the model's name
and version. A single model directory (`VITSERVE_MODEL_DIR`) is named and versioned by its
config.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.model_check import load_config

log = logging.getLogger(__name__)

# Each file's (relative path, size, mtime): a version whose signature has not changed for one
# poll interval is complete.
Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class VersionDir:
    model: str
    version: str
    path: Path
    signature: Signature


OnDisk = dict[str, dict[str, VersionDir]]  # model -> version -> its directory


def version_key(version: str) -> int:
    """Newest first sorts by this (a single model's non-numeric version counts as 0)."""
    return int(version) if version.isdigit() else 0


def signature(path: Path) -> Signature:
    files = []
    for file in sorted(path.rglob("*")):
        try:
            stat = file.stat()
        except OSError:  # removed while we looked
            continue
        if file.is_file():
            files.append((str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return tuple(files)


def scan_repository(root: Path) -> OnDisk:
    """Every model and version directory under `root`."""
    found: OnDisk = {}
    for model_dir in sorted(root.iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        versions: dict[str, VersionDir] = {}
        for version_dir in sorted(model_dir.iterdir()):
            name = version_dir.name
            if name.startswith(".") or not version_dir.is_dir():
                continue
            if not name.isdigit() or int(name) < 1:
                log.warning("ignoring %s: versions are positive integers", version_dir)
                continue
            version = str(int(name))
            versions[version] = VersionDir(
                model_dir.name, version, version_dir, signature(version_dir)
            )
        found[model_dir.name] = versions
    return found


def single_model(model_dir: Path) -> OnDisk:
    """One model directory, named and versioned by its config.json."""
    config = load_config(model_dir)
    version = VersionDir(config.name, config.version, model_dir, signature(model_dir))
    return {config.name: {config.version: version}}
