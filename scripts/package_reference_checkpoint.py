"""Turn a training run of `training/configs/reference.yaml` into the shipped `checkpoints/dac_reference` folder.

    python scripts/package_reference_checkpoint.py --run_dir outputs/dac_reference --export best \\
        --output_dir checkpoints/dac_reference

Copies the exported generator (`<run_dir>/<export>/`, weight norm folded) with `save_pretrained` as safetensors,
adds the matching feature extractor (`preprocessor_config.json`), and draws the training curve from the run's
TensorBoard log (`training_curve.png`, plus `training_curve.md`, a table of the validation scores). The model
card (`README.md`) is written by hand from these and from `dac eval`; see docs/reference_checkpoint.md.
"""

import argparse
import shutil
from pathlib import Path

from modeling_dac import DacModel
from modeling_dac.atomic import write_folder_atomically
from modeling_dac.saving import write_model_files

__all__ = ["main", "read_scalars", "write_training_curve"]

MAX_WEIGHTS_BYTES = 20 * 1024 * 1024
TRAINING_CURVES = ("loss/mel", "loss/waveform_l1")
VALIDATION_CURVES = ("validation/mel_distance", "validation/stft_distance", "validation/si_sdr")


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the TensorBoard event files under `log_dir`, as `(step, value)` lists by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    event_files = sorted(log_dir.rglob("events.out.tfevents.*"))
    if not event_files:
        raise ValueError(f"No TensorBoard event file under {log_dir}: was the run started with report_to tensorboard?")
    for event_file in event_files:
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            series.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return {tag: sorted(values) for tag, values in series.items()}


def concatenate_runs(runs: list[dict[str, list[tuple[int, float]]]]) -> dict[str, list[tuple[int, float]]]:
    """
    The series of runs that continued one another (a later run started from the previous run's export), with
    each run's steps shifted to follow the last step of the runs before it.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    offset = 0
    for run in runs:
        for tag, values in run.items():
            series.setdefault(tag, []).extend((step + offset, value) for step, value in values)
        offset += max((step for values in run.values() for step, _ in values), default=0)
    return series


def write_training_curve(series: dict[str, list[tuple[int, float]]], output_dir: Path) -> None:
    """`training_curve.png` (training mel loss and validation scores against steps) and `training_curve.md`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for tag in TRAINING_CURVES[:1] + VALIDATION_CURVES[:1]:
        if tag in series:
            steps, values = zip(*series[tag])
            axes[0].plot(steps, values, label=tag, marker="o" if tag.startswith("validation") else None)
    axes[0].set_ylabel("mel distance")
    for axis, tag in zip(axes[1:], VALIDATION_CURVES[1:]):
        if tag in series:
            steps, values = zip(*series[tag])
            axis.plot(steps, values, marker="o")
        axis.set_ylabel(tag)
    for axis in axes:
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(output_dir / "training_curve.png", dpi=100)
    plt.close(figure)

    validation_steps = sorted({step for tag in VALIDATION_CURVES for step, _ in series.get(tag, [])})
    by_tag = {tag: dict(series.get(tag, [])) for tag in VALIDATION_CURVES}
    lines = ["| step | mel distance | STFT distance | SI-SDR (dB) |", "|---:|---:|---:|---:|"]
    for step in validation_steps:
        cells = [f"{by_tag[tag][step]:.3f}" if step in by_tag[tag] else "" for tag in VALIDATION_CURVES]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    (output_dir / "training_curve.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run_dir",
        type=Path,
        nargs="+",
        default=[Path("outputs/dac_reference")],
        help="the training run, or several runs that continued one another, in order; the model is the last one's",
    )
    parser.add_argument(
        "--export",
        default="best",
        help="which export of the last run: best (validation mel), final, or averaged (training/average_checkpoints.py)",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("checkpoints/dac_reference"))
    args = parser.parse_args(argv)

    export = args.run_dir[-1] / args.export
    if not (export / "config.json").is_file():
        raise ValueError(f"{export} is not an exported model (no config.json): check --run_dir and --export.")
    model = DacModel.from_pretrained(export)
    series = concatenate_runs([read_scalars(run_dir / "logs") for run_dir in args.run_dir])
    def write(staging: Path) -> None:
        staging.mkdir(parents=True)
        write_model_files(model, staging)
        weights_bytes = (staging / "model.safetensors").stat().st_size
        if weights_bytes > MAX_WEIGHTS_BYTES:
            raise ValueError(f"model.safetensors is {weights_bytes / 2**20:.1f} MiB, over the 20 MiB budget.")
        write_training_curve(series, staging)
        # What this script does not write (the hand-written model card, the held-out metrics plot) survives.
        earlier = args.output_dir.iterdir() if args.output_dir.is_dir() else ()
        for entry in earlier:
            if entry.is_file() and not (staging / entry.name).exists():
                shutil.copy2(entry, staging / entry.name)

    write_folder_atomically(args.output_dir, write)
    weights_bytes = (args.output_dir / "model.safetensors").stat().st_size
    print(f"{args.output_dir}: {weights_bytes / 2**20:.1f} MiB of weights, {model.config.bitrate / 1000:.2f} kbps")


if __name__ == "__main__":
    main()
