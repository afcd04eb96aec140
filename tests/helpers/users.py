"""A second local user for the tests that need one (a store the daemon may not write, another
user attacking the state folder). Making users needs root, which CI has."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def throwaway_user(name: str) -> Iterator[pwd.struct_passwd]:
    """A system user without home or shell, made if missing and then removed again."""
    if os.geteuid() != 0:
        pytest.fail("switching users needs root (CI runs as root)")
    made = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", name], check=True)
        made = True
    try:
        yield pwd.getpwnam(name)
    finally:
        if made:
            subprocess.run(["userdel", name], capture_output=True)


def as_user(user: pwd.struct_passwd) -> list[str]:
    """A command prefix that runs as `user` (exec'ing, so the pid stays the one we started),
    able to look into root's private test folders (dac_read_search) but not to write anywhere
    it has no right to."""
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
