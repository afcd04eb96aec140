"""One module per `guardctl` subcommand: NAME, HELP, add_arguments(parser), run(args) -> int."""

from . import (
    config_cmd,
    conflicts,
    doctor,
    fix,
    gc,
    init,
    install_service,
    locks,
    restart,
    run,
    status,
    stop,
    uninstall_service,
)

COMMANDS = (run, status, doctor, stop, restart, init, install_service, uninstall_service, fix,
            locks, conflicts, gc, config_cmd)
