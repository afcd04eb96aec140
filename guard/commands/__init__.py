"""One module per `guardctl` subcommand: NAME, HELP, add_arguments(parser), run(args) -> int."""

from . import config_cmd, conflicts, fix, gc, init, locks, restart, run, status, stop

COMMANDS = (run, status, stop, restart, init, fix, locks, conflicts, gc, config_cmd)
