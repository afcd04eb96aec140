"""`guardctl`'s argument parsing: each command's own flags, and its own usage on errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guard.cli import build_parser, main


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_flag_shows_the_commands_usage(capsys):
    err = error_of(["gc", "--bogus"], capsys)
    assert err.startswith("usage: guardctl gc") and "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("command", ["gc", "locks", "stop", "fix", "conflicts", "restart"])
def test_port_is_not_offered_where_it_means_nothing(command, capsys):
    err = error_of([command, "--port", "1"], capsys)
    assert err.startswith(f"usage: guardctl {command}") and "--port" in err


def test_port_is_offered_where_the_server_port_is_used():
    parser = build_parser()
    for command in ("run", "status", "doctor", "config"):
        assert parser.parse_args([command, "--port", "5077"]).port == 5077


def test_gc_accepts_dry_run_but_not_with_yes(capsys):
    args = build_parser().parse_args(["gc", "--dry-run"])
    assert args.dry_run and not args.yes
    err = error_of(["gc", "--dry-run", "--yes"], capsys)
    assert err.startswith("usage: guardctl gc") and "not allowed with" in err


def test_init_help_shows_what_init_takes(capsys):
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: guardctl init") and "--store PATH" in out
    assert "--port" not in out and "--config" not in out


def test_restart_and_install_service_take_no_store_flag(capsys):
    assert "--store" in error_of(["restart", "--store", "/x"], capsys)
    err = error_of(["install-service", "--systemd", "--store", "/x"], capsys)
    assert err.startswith("usage: guardctl install-service")


def test_without_a_console_the_commands_write_to_nothing_and_do_not_fail(tmp_path):
    """pythonw.exe (the Windows logon task) starts Python with no stdout and no stderr."""
    code = ("import sys; sys.stdout = None; sys.stderr = None\n"
            "from guard.cli import main\n"
            f"raise SystemExit(main(['status', '--state-dir', {str(tmp_path)!r}]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 3, res.stderr  # "not running": said to nobody, no traceback
    assert res.stdout == "" and res.stderr == ""
