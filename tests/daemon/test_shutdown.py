"""The daemon's shutdown: the server tree is ended before anything is written, and a state
folder that cannot be written (full, read-only) is logged while shutdown goes on."""

from __future__ import annotations

import logging

from guard.daemon.loop import Daemon


class Recorder:
    """A keeper or part that notes each call in a shared list."""

    def __init__(self, name: str, calls: list[str], fail: bool = False) -> None:
        self.name, self.calls, self.fail = name, calls, fail
        self.survivors: list[int] = []

    def begin_stop(self) -> None:
        self.calls.append(f"{self.name}.begin_stop")

    def stop(self) -> None:
        self.calls.append(f"{self.name}.stop")
        if self.fail:
            raise RuntimeError(f"{self.name} broke")


def daemon(calls: list[str], write_fails: bool, part_fails: bool = False) -> Daemon:
    d = Daemon.__new__(Daemon)  # the shutdown's collaborators only: no config, no processes
    d.keeper = Recorder("server", calls)  # type: ignore[assignment]
    d.background = [Recorder("rewrite", calls, fail=part_fails)]  # type: ignore[list-item]
    d.peers = Recorder("heartbeats", calls)  # type: ignore[assignment]

    def write_status(force: bool = False) -> None:
        calls.append("write_status")
        if write_fails:
            raise OSError(28, "No space left on device", "/state/status.json")

    d.write_status = write_status  # type: ignore[method-assign]
    d._tell = lambda: calls.append("tell")  # type: ignore[method-assign]
    return d


def test_the_server_tree_is_ended_before_anything_is_written():
    calls: list[str] = []
    daemon(calls, write_fails=False)._shutdown()
    assert calls == ["server.begin_stop", "tell", "server.stop", "rewrite.stop",
                     "heartbeats.stop", "write_status"]


def test_a_full_state_folder_is_logged_and_shutdown_goes_on(caplog):
    calls: list[str] = []
    logger = logging.getLogger("guard.daemon")
    logger.addHandler(caplog.handler)  # "guard" may not propagate once a daemon set up logging
    try:
        with caplog.at_level(logging.INFO, logger="guard.daemon"):
            survivors = daemon(calls, write_fails=True, part_fails=True)._shutdown()
    finally:
        logger.removeHandler(caplog.handler)
    assert survivors == []
    assert calls[-1] == "write_status" and "heartbeats.stop" in calls
    text = caplog.text
    assert "shutdown: writing the status failed: [Errno 28] No space left on device" in text
    assert "shutdown: stopping rewrite failed; going on" in text  # with its traceback
    assert caplog.records[-1].getMessage() == "stopped"
