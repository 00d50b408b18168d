"""The `dac` command line: thin subcommands over the package's functions.

Each subcommand is a function `add_<name>_arguments(parser)` plus `run_<name>(args) -> int` registered in
`SUBCOMMANDS`; `main` dispatches and turns `ValueError`s into a one-line message and exit status 1.
"""

import argparse
import sys

__all__ = ["main"]


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="official DAC .pth file (e.g. weights_44khz_8kbps_0.0.1.pth)")
    parser.add_argument("output_dir", help="directory to write model.safetensors, config.json, preprocessor_config.json")


def run_convert(args: argparse.Namespace) -> int:
    from .conversion import convert_official_checkpoint

    model = convert_official_checkpoint(args.checkpoint, args.output_dir)
    config = model.config
    print(
        f"Converted {args.checkpoint} -> {args.output_dir}: {config.sampling_rate} Hz, {config.n_codebooks} codebooks, "
        f"latent {config.hidden_size}, {config.bitrate / 1000:.2f} kbps, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters (weight norm folded)."
    )
    return 0


SUBCOMMANDS = {
    "convert": ("Convert an official DAC .pth checkpoint into a save_pretrained directory.", add_convert_arguments, run_convert),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dac", description="Descript Audio Codec tools (modeling_dac).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"dac {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
