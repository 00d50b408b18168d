"""Crash-safe checkpoints: resumable `checkpoint-<step>/` folders and exported `final/` and `best/` models.

Every folder is written under a temporary name in the same directory and renamed into place once complete, so
a run killed at any moment leaves the previous checkpoint (and the previous export) loadable. Checkpoints hold
Accelerate state, including pickled random-number-generator states: load only checkpoints you wrote.
"""

import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

__all__ = ["TrainingProgress", "export_models", "latest_checkpoint", "save_checkpoint"]

_CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class TrainingProgress:
    """Counters that a resumed run must continue from; registered with Accelerate so they live in checkpoints."""

    def __init__(self):
        self.step = 0
        self.best_validation_mel = float("inf")
        self.skipped_clips = {"silent": 0, "too_short": 0, "corrupt": 0}
        self.nonfinite_steps = 0

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "best_validation_mel": self.best_validation_mel,
            "skipped_clips": dict(self.skipped_clips),
            "nonfinite_steps": self.nonfinite_steps,
        }

    def load_state_dict(self, state: dict):
        self.step = int(state["step"])
        self.best_validation_mel = float(state["best_validation_mel"])
        self.skipped_clips = dict(state["skipped_clips"])
        self.nonfinite_steps = int(state["nonfinite_steps"])


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in output_dir.iterdir() if (match := _CHECKPOINT_PATTERN.match(path.name))]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The `checkpoint-<step>` folder with the highest step, or `None`."""
    checkpoints = _checkpoints(Path(output_dir))
    return checkpoints[-1][1] if checkpoints else None


def _remove(path: Path):
    # Rename first, so a kill during the deletion never leaves a half-deleted folder under a checkpoint's name.
    doomed = path.with_name(f".deleting-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _replace_directory(temporary: Path, target: Path):
    # At every moment either `target` or `.previous-<target>` is a complete folder.
    previous = target.with_name(f".previous-{target.name}")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(temporary, target)
    shutil.rmtree(previous, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, output_dir: str | Path, step: int, keep_last: int) -> Path:
    """`accelerator.save_state` into `output_dir/checkpoint-<step>/` atomically, then keep the last `keep_last`."""
    output_dir = Path(output_dir)
    target = output_dir / f"checkpoint-{step}"
    temporary = output_dir / f".incomplete-checkpoint-{step}"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in [*output_dir.glob(".incomplete-checkpoint-*"), *output_dir.glob(".deleting-checkpoint-*")]:
            shutil.rmtree(leftover)  # what an earlier, killed run left half-written or half-deleted
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _replace_directory(temporary, target)
        for _, old in _checkpoints(output_dir)[:-keep_last]:
            _remove(old)
    accelerator.wait_for_everyone()
    return target


def export_models(accelerator: Accelerator, generator, discriminator, target: str | Path):
    """
    Write the generator with `save_pretrained` (folded weight norm, loadable by `DacModel.from_pretrained`) to
    `target/` and the discriminator to `target/discriminator/`, replacing any previous export atomically.
    """
    target = Path(target)
    if accelerator.is_main_process:
        temporary = target.with_name(f".incomplete-{target.name}")
        shutil.rmtree(temporary, ignore_errors=True)
        accelerator.unwrap_model(generator).save_pretrained(temporary)
        accelerator.unwrap_model(discriminator).save_pretrained(temporary / "discriminator")
        _replace_directory(temporary, target)
    accelerator.wait_for_everyone()
