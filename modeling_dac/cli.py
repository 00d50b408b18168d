"""The `dac` command line: discovers the subcommands in `modeling_dac.commands` and dispatches to them.

A `ValueError` raised by a subcommand becomes a one-line message on stderr and exit status 1, as does a missing
optional package (with the pip extra that installs it). Warnings are printed as `dac COMMAND: warning: ...` lines,
without Python's source location.
"""

import argparse
import functools
import importlib
import pkgutil
import sys
import warnings

from . import commands

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dac", description="Descript Audio Codec tools (modeling_dac).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        for name, command in module.COMMANDS.items():
            subparser = subparsers.add_parser(name, help=command.help, description=command.help)
            command.add_arguments(subparser)
            subparser.set_defaults(run=command.run, extra=command.extra)
    return parser


def _print_warning(command: str, message, category, filename, lineno, file=None, line=None) -> None:
    kind = "" if category is UserWarning else f"{category.__name__}: "
    print(f"dac {command}: warning: {kind}{message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_print_warning, args.command)
        try:
            return args.run(args)
        except ValueError as error:
            print(f"dac {args.command}: error: {error}", file=sys.stderr)
            return 1
        except ModuleNotFoundError as error:
            if args.extra is None:
                raise
            print(
                f"dac {args.command}: error: needs the package {error.name!r}, which is not installed: "
                f"pip install 'modeling_dac[{args.extra}]'",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":
    sys.exit(main())
