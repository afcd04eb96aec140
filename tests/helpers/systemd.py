"""`systemd-analyze verify` for the units the guard renders and installs (CI installs Debian's
systemd package for it; elsewhere the tests that need it are skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed on this machine, so the units cannot be verified "
           "here (they are still rendered and compared with the shipped files); `apt install "
           "systemd` provides it. CI installs it and sets CI=true, so there this fails instead")


def verify(unit: Path, user: bool = False, root: Path | None = None) -> str:
    """Run `systemd-analyze verify`; returns what it printed about our unit (nothing when
    clean; complaints about the machine's other units are not ours)."""
    assert ANALYZE, "systemd-analyze is missing: install Debian's systemd package"
    cmd = [ANALYZE, "verify", "--man=no"]
    env = dict(os.environ)
    if user:
        cmd.append("--user")
        runtime = tempfile.TemporaryDirectory(prefix="rt")  # short: units' socket paths
        env["XDG_RUNTIME_DIR"] = runtime.name
    if root is not None:
        cmd.append(f"--root={root}")
        cmd.append(unit.name)
    else:
        cmd.append(str(unit))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 0, out
    return "\n".join(line for line in out.splitlines() if "mlflow-guard" in line)
