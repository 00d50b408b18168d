"""`dac convert`: an official DAC `.pth` checkpoint to a `save_pretrained` directory."""

import argparse

from . import Command

__all__ = ["COMMANDS"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="official DAC .pth file")
    parser.add_argument("output_dir", help="directory for model.safetensors, config.json, preprocessor_config.json")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")


def run(args: argparse.Namespace) -> int:
    from ..conversion import convert_official_checkpoint

    model = convert_official_checkpoint(args.checkpoint, args.output_dir, overwrite=args.overwrite)
    config = model.config
    print(
        f"Converted {args.checkpoint} -> {args.output_dir}: {config.sampling_rate} Hz, {config.n_codebooks} "
        f"codebooks, latent {config.hidden_size}, {config.bitrate / 1000:.2f} kbps, "
        f"{model.num_parameters() / 1e6:.2f}M parameters (weight norm folded)."
    )
    return 0


COMMANDS = {"convert": Command("Convert an official DAC .pth checkpoint into a save_pretrained directory.", add_arguments, run)}
