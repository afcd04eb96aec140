"""One module per `guardctl` subcommand: NAME, HELP, add_arguments(parser), run(args) -> int."""

from . import config_cmd, init, restart, run, status, stop

COMMANDS = (run, status, stop, restart, init, config_cmd)
