"""atpctl: the ops command line of the ATP engine, speaking to atpd through atp.client.

One module per command group (inventory, reservations, events, database), the argument types
they read (arguments), how they show results (views), what a command returns (outcome), and
the entry point that builds the parser and runs a command (app). Groups import outcome,
arguments and views; app imports the groups; nothing imports app.
"""

from atp.cli.app import build_parser, main
from atp.cli.arguments import lane, line_quantity, reservation_line
from atp.cli.views import format_table

__all__ = ["build_parser", "format_table", "lane", "line_quantity", "main", "reservation_line"]
