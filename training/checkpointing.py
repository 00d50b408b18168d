"""Crash-safe checkpoints: resumable `checkpoint-<step>/` folders, exported `final/` and `best/` models, and the
average of the generator weights of several checkpoints.

Every folder is written under a temporary name in the same directory and renamed into place once complete, so
a run killed at any moment leaves the previous checkpoint (and the previous export) loadable. A checkpoint is
Accelerate's state (models, optimizers, random-number-generator states, all read back with
`torch.load(weights_only=True)`) plus `training_state.json`: the learning-rate schedulers and the run's counters.
Those are kept out of Accelerate's `register_for_checkpointing`, whose files are unpickled without
`weights_only`, so resuming never runs code from a checkpoint.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from modeling_dac.atomic import replace_directory, write_folder_atomically
from modeling_dac.saving import write_model_files
from modeling_dac.weight_norm import fold_weight_norm

from .data import SKIP_REASONS

__all__ = [
    "TrainingProgress",
    "average_generator_weights",
    "export_models",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

_CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_FILE = "training_state.json"
# Accelerate names the prepared models' weights in the order they were prepared; train.py prepares the generator
# first.
GENERATOR_WEIGHTS_FILE = "model.safetensors"


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict): ...


class TrainingProgress:
    """Counters that a resumed run must continue from; saved in every checkpoint's `training_state.json`."""

    def __init__(self):
        self.step = 0
        self.best_validation_mel = float("inf")
        self.skipped_clips = dict.fromkeys(SKIP_REASONS, 0)
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


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """`(step, folder)` of every `checkpoint-<step>` folder of a run, by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in output_dir.iterdir() if (match := _CHECKPOINT_PATTERN.match(path.name))]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The `checkpoint-<step>` folder with the highest step, or `None`."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def _remove(path: Path):
    # Rename first, so a kill during the deletion never leaves a half-deleted folder under a checkpoint's name.
    doomed = path.with_name(f".deleting-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | Path, step: int, keep_last: int, training_state: dict[str, Stateful]
) -> Path:
    """
    `accelerator.save_state` and the `state_dict()` of each object of `training_state` (as JSON, by name) into
    `output_dir/checkpoint-<step>/` atomically, then keep the last `keep_last` checkpoints.
    """
    output_dir = Path(output_dir)
    target = output_dir / f"checkpoint-{step}"
    temporary = output_dir / f".incomplete-checkpoint-{step}"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in [*output_dir.glob(".incomplete-checkpoint-*"), *output_dir.glob(".deleting-checkpoint-*")]:
            shutil.rmtree(leftover)  # what an earlier, killed run left half-written or half-deleted
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    if accelerator.is_main_process:
        states = {name: stateful.state_dict() for name, stateful in training_state.items()}
        (temporary / TRAINING_STATE_FILE).write_text(json.dumps(states, indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(temporary, target)
        for _, old in list_checkpoints(output_dir)[:-keep_last]:
            _remove(old)
    accelerator.wait_for_everyone()
    return target


def _load_legacy_state(path: Path) -> dict:
    """A state dict pickled by Accelerate, read with `weights_only=True`; numpy float scalars are allowed."""
    numpy_scalar = np.float64(0).__reduce__()[0]  # numpy's scalar constructor; its module moved in numpy 2
    with torch.serialization.safe_globals([numpy_scalar, np.dtype, type(np.dtype(np.float64))]):
        return torch.load(path, weights_only=True)


def load_checkpoint(accelerator: Accelerator, checkpoint: str | Path, training_state: dict[str, Stateful]):
    """Restore what `save_checkpoint` wrote: Accelerate's state, then each object of `training_state` by name."""
    checkpoint = Path(checkpoint)
    state_file = checkpoint / TRAINING_STATE_FILE
    if state_file.exists():
        accelerator.load_state(str(checkpoint))
        states = json.loads(state_file.read_text())
    else:  # checkpoints of earlier versions: Accelerate's custom_checkpoint_<i>.pkl, in registration order
        states = {
            name: _load_legacy_state(checkpoint / f"custom_checkpoint_{index}.pkl")
            for index, name in enumerate(training_state)
        }
        # Accelerate refuses a folder with more custom_checkpoint files than registered objects: show it the rest.
        with tempfile.TemporaryDirectory(prefix=".resume-view-", dir=checkpoint.parent) as view:
            for entry in checkpoint.iterdir():
                if not entry.name.startswith("custom_checkpoint_"):
                    os.symlink(entry.resolve(), Path(view) / entry.name)
            accelerator.load_state(view)
    for name, stateful in training_state.items():
        stateful.load_state_dict(states[name])


def export_models(accelerator: Accelerator, generator, discriminator, target: str | Path):
    """
    Write the generator with `save_pretrained` (folded weight norm, loadable by `DacModel.from_pretrained`) and
    its feature extractor's config to `target/`, and the discriminator to `target/discriminator/`, replacing any
    previous export atomically.
    """
    if accelerator.is_main_process:

        def write(folder: Path):
            write_model_files(accelerator.unwrap_model(generator), folder)
            accelerator.unwrap_model(discriminator).save_pretrained(folder / "discriminator")

        write_folder_atomically(target, write)
    accelerator.wait_for_everyone()


def average_generator_weights(checkpoints: list[str | Path]) -> dict[str, torch.Tensor]:
    """
    The mean of the generator weights saved in `checkpoints` (`checkpoint-<step>` folders of one run), as a
    `DacModel` state dict with plain weights. Each checkpoint's weight norm is folded first, so the mean is taken
    over the weights the models compute with, not over magnitudes and directions.
    """
    if not checkpoints:
        raise ValueError("average_generator_weights needs at least one checkpoint.")
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for checkpoint in checkpoints:
        weights_file = Path(checkpoint) / GENERATOR_WEIGHTS_FILE
        if not weights_file.is_file():
            raise ValueError(f"{checkpoint} is not a training checkpoint: it has no {GENERATOR_WEIGHTS_FILE}.")
        state_dict = fold_weight_norm(load_file(weights_file))
        if not dtypes:
            dtypes = {name: tensor.dtype for name, tensor in state_dict.items()}
        elif state_dict.keys() != dtypes.keys():
            raise ValueError(f"{checkpoint} holds a different model than {checkpoints[0]}: their weights differ in name.")
        for name, tensor in state_dict.items():
            sums[name] = sums.get(name, 0) + tensor.double()
    return {name: (total / len(checkpoints)).to(dtypes[name]) for name, total in sums.items()}
