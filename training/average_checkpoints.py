"""Average the generator weights of a run's last checkpoints into a `DacModel` folder (checkpoint averaging).

With small batches the weights move noisily from step to step; the mean of the weights of the last few
checkpoints of a run, late in training when they lie close together, often reconstructs better than any one
of them. Compare it with the run's `best/` on the validation split (`dac eval`) before using it.

    python training/average_checkpoints.py outputs/run --last 20       # writes outputs/run/averaged/

The folder holds the generator only (`from_pretrained`, or `--init_from` to train on with a new discriminator).
Keep enough checkpoints while training (`save_total_limit`).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `training` and `modeling_dac` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse

from modeling_dac import DacConfig, DacModel
from modeling_dac.saving import save_model_folder
from training.checkpointing import average_generator_weights, list_checkpoints

__all__ = ["main"]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the training run's output_dir, holding checkpoint-<step> folders")
    parser.add_argument("--last", type=int, default=10, help="how many of the latest checkpoints to average")
    parser.add_argument(
        "--config",
        type=Path,
        help="folder whose config.json describes the generator (default: the run's final/, else best/)",
    )
    parser.add_argument("--output_dir", type=Path, help="where to write the model (default: <run_dir>/averaged)")
    args = parser.parse_args(argv)

    checkpoints = list_checkpoints(args.run_dir)
    if args.last < 1 or len(checkpoints) < args.last:
        raise ValueError(f"--last {args.last}: {args.run_dir} has {len(checkpoints)} checkpoint(s).")
    checkpoints = checkpoints[-args.last :]
    config_dir = args.config or next(
        (folder for folder in (args.run_dir / "final", args.run_dir / "best") if (folder / "config.json").is_file()),
        None,
    )
    if config_dir is None:
        raise ValueError(f"{args.run_dir} has no final/ or best/ export to take the model's config from: pass --config.")

    model = DacModel(DacConfig.from_pretrained(config_dir))
    model.load_state_dict(average_generator_weights([folder for _, folder in checkpoints]), strict=True)
    # A re-run replaces an earlier average; anything else in the folder (a run directory, say) is refused.
    output_dir = save_model_folder(model, args.output_dir or args.run_dir / "averaged", overwrite=True)
    steps = [step for step, _ in checkpoints]
    print(f"{output_dir}: the mean of {len(steps)} checkpoints, steps {steps[0]} to {steps[-1]}")
    return output_dir


if __name__ == "__main__":
    main()
