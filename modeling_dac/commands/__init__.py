"""Subcommands of the `dac` command line, one module per theme.

Each module defines `COMMANDS = {name: Command(help, add_arguments, run)}`; `modeling_dac.cli` discovers the
modules of this package, so adding a subcommand is adding a module. `run(args)` returns the exit status.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command"]


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
