import sys

import pytest

import windows_service
from tests.windows_service.fakes import FakeSCM, install

OURS = ("service", "install")


@pytest.fixture
def scm(monkeypatch):
    """A fake SCM with pywin32's modules faked over it; windows_service's modules imported
    afresh against them, and forgotten after the test."""
    fake = FakeSCM()
    install(monkeypatch, fake)
    yield fake
    for name in OURS:
        sys.modules.pop(f"windows_service.{name}", None)
        if hasattr(windows_service, name):
            delattr(windows_service, name)
