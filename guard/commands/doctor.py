"""`guardctl doctor`: check this machine's setup before running the guard (exit 0 or 1)."""

from __future__ import annotations

import argparse

from guard.commands.common import add_config_options, config_from, daemon_pid_of
from guard.core.config import ConfigError
from guard.service import doctor

NAME = "doctor"
HELP = "check the setup (config, store, sync client, filesystem, port, mlflow, clocks); " \
       "exit 1 if something blocks running"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, port=True)
    parser.add_argument("--json", action="store_true", help="the findings as a JSON list")


def run(args: argparse.Namespace, probes: doctor.Probes | None = None) -> int:
    try:
        cfg, error = config_from(args), None
    except ConfigError as exc:
        cfg, error = None, str(exc)
    facts = doctor.gather(cfg, probes or doctor.Probes(),
                          doctor.config_facts(cfg, error, args.config,
                                              daemon_pid_of(cfg) if cfg else None))
    findings = doctor.run_checks(facts)
    print(doctor.to_json(findings) if args.json else doctor.render(findings))
    return doctor.exit_code(findings)
