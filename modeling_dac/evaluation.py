"""Evaluate a DAC model on a dataset at several bitrates, as the paper does, resumably: the engine of `dac eval`.

Per clip, following the official `scripts/save_test_set.py`, `get_samples.py` and `evaluate.py`:

1. the clip is mixed to mono and cropped to its first `clip_seconds`; with `input_loudness` it is normalised to
   that loudness (the official test clips are at -16 LUFS) and scaled down if it would clip;
2. the model encodes it once, at its own sample rate, with the largest requested number of codebooks, and decodes
   the first `n` codebooks for each requested `n`. In eval mode the residual quantizer is sequential, so the codes
   of the first `n` codebooks are exactly what encoding with `n_quantizers=n` returns: decoding prefixes gives the
   same reconstructions for one encoder pass instead of one per bitrate;
3. with `match_loudness` (default, as the official `get_samples.py`) each reconstruction is scaled to the
   integrated loudness of the clip, so that a level error does not dominate the distances;
4. the metrics (`modeling_dac.metrics`) compare the clip, resampled from its own rate, with the reconstruction,
   resampled from the model's rate, at `resample_to` Hz (default the model's rate; the paper used 44.1 kHz).

Each `(clip, n_quantizers)` result is appended to `results.jsonl` in the output directory as soon as it is
computed; a rerun with the same model, data and settings skips the pairs (and metrics) already there, and the
report is always rebuilt from that file.
"""

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import audio as audio_io
from . import metrics as codec_metrics
from .atomic import atomic_write_path
from .audio_datasets import load_audio_dataset, read_audio_record
from .evaluation_plots import plot_metrics_against_bitrate, plot_spectrograms
from .evaluation_report import build_report, merge_results, write_report
from .windowing import eval_mode

__all__ = [
    "DEFAULT_METRICS",
    "EVALUATION_METRICS",
    "evaluate_model",
    "read_results",
    "reconstruct_at_bitrates",
    "validate_metrics",
]

# Command-line name -> (key in the report, function(reference, estimate, sampling_rate)), in the paper's order.
EVALUATION_METRICS = {
    "mel": ("mel_distance", codec_metrics.mel_distance),
    "stft": ("stft_distance", codec_metrics.stft_distance),
    "visqol": ("visqol", codec_metrics.visqol),
    "sisdr": ("si_sdr", codec_metrics.si_sdr),
}
DEFAULT_METRICS = tuple(EVALUATION_METRICS)

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
BITRATE_PLOT_FILE = "metrics_vs_bitrate.png"
SPECTROGRAM_DIR = "spectrograms"

# The spectral distances reflect-pad by half their longest window (2048 samples).
_MINIMUM_SAMPLES = max(codec_metrics.MEL_WINDOW_LENGTHS + codec_metrics.STFT_WINDOW_LENGTHS) // 2 + 1


@torch.no_grad()
def reconstruct_at_bitrates(model, audio: np.ndarray, n_quantizers_list: Sequence[int]) -> dict[int, np.ndarray]:
    """
    Reconstructions of mono `audio` `(samples,)` at the model's rate with each number of codebooks in
    `n_quantizers_list`, as `{n: float32 (samples,)}`: one encode with the largest `n`, one decode per prefix of
    the codes. The model must be in eval mode (in train mode quantizer dropout makes codes random).
    """
    if model.training:
        raise ValueError("reconstruct_at_bitrates needs the model in eval mode: call model.eval() first.")
    device = next(model.parameters()).device
    input_values = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None].to(device)
    audio_codes = model.encode(input_values, n_quantizers=max(n_quantizers_list), return_dict=True).audio_codes
    reconstructions = {}
    for n_quantizers in n_quantizers_list:
        audio_values = model.decode(audio_codes=audio_codes[:, :n_quantizers], return_dict=True).audio_values
        reconstructions[n_quantizers] = audio_values[0, 0, : len(audio)].float().cpu().numpy()
    return reconstructions


def read_results(path: str | Path) -> list[dict]:
    """The rows of a `results.jsonl`; a last line cut short by an interrupted run is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path} line {number} is not valid JSON ({error}); the results file is damaged.")
    return rows


def _drop_cut_last_line(path: Path) -> None:
    """Rewrite `path` without a last line that an interrupted run left unfinished, so appends start cleanly."""
    if not path.exists():
        return
    text = path.read_text()
    if not text or text.endswith("\n"):
        return
    complete, _, last = text.rpartition("\n")
    try:
        json.loads(last)
        text = text + "\n"  # only the newline was lost
    except json.JSONDecodeError:
        text = complete + "\n" if complete else ""
    with atomic_write_path(path) as temporary:
        temporary.write_text(text)


def _append_result(path: Path, row: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(row, allow_nan=False) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_run_file(output_dir: Path, identity: dict) -> None:
    """Record what the results depend on, or check that an existing output directory was made with the same."""
    run_path = output_dir / RUN_FILE
    if run_path.exists():
        recorded = json.loads(run_path.read_text())
        differences = sorted(key for key in identity.keys() | recorded.keys() if identity.get(key) != recorded.get(key))
        if differences:
            raise ValueError(
                f"{output_dir} holds results of another evaluation (it differs in: {', '.join(differences)}); "
                "choose a new output directory, or delete this one to start over."
            )
        return
    if (output_dir / RESULTS_FILE).exists():
        raise ValueError(f"{output_dir} has {RESULTS_FILE} but no {RUN_FILE}: cannot tell which run made it.")
    with atomic_write_path(run_path) as temporary:
        temporary.write_text(json.dumps(identity, indent=2) + "\n")


def _validate_n_quantizers(n_quantizers_list: Sequence[int] | None, n_codebooks: int) -> list[int]:
    if n_quantizers_list is None:
        return [n_codebooks]
    values = sorted({int(n) for n in n_quantizers_list})
    if not values or values[0] < 1 or values[-1] > n_codebooks:
        raise ValueError(
            f"n_quantizers must be between 1 and the model's n_codebooks={n_codebooks}, got {list(n_quantizers_list)}."
        )
    return values


def validate_metrics(metric_names: Sequence[str]) -> list[str]:
    """The command-line metric names in the paper's order; a ValueError for unknown ones or a missing package."""
    unknown = [name for name in metric_names if name not in EVALUATION_METRICS]
    if unknown or not metric_names:
        raise ValueError(
            f"Unknown or no metrics {unknown or list(metric_names)}: choose from {', '.join(EVALUATION_METRICS)}."
        )
    if "visqol" in metric_names:
        try:
            codec_metrics.require_visqol()
        except ImportError as error:
            raise ValueError(f"{error} Or leave visqol out of the metrics.") from error
    return [name for name in EVALUATION_METRICS if name in metric_names]


def _records(dataset, max_clips: int | None) -> Iterator[tuple[int, dict]]:
    from datasets import Dataset

    if max_clips is not None:
        if isinstance(dataset, Dataset):
            dataset = dataset.select(range(min(max_clips, len(dataset))))
        else:
            dataset = dataset.take(max_clips)
    for index, row in enumerate(dataset):
        yield index, row["audio"]


def _clip_identity(index: int, record, folder: Path | None) -> tuple[str, str]:
    """
    (clip_id, name): a file of the data folder is known by its relative path, which stays valid when files are
    added; any other record by its position in the dataset.
    """
    path = record.get("path") if isinstance(record, dict) else str(record)
    if folder is not None and path and Path(path).is_absolute() and Path(path).is_relative_to(folder):
        relative = Path(path).relative_to(folder).as_posix()
        return relative, relative
    return str(index), path or str(index)


def _spectrogram_path(output_dir: Path, position: int, name: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:80]
    return output_dir / SPECTROGRAM_DIR / f"{position:03d}_{stem}.png"


@dataclass
class _ClipSettings:
    sampling_rate: int  # the model's
    metric_rate: int
    clip_seconds: float | None
    input_loudness: float | None
    match_loudness: bool


def _prepare_clip(record, settings: _ClipSettings) -> tuple[np.ndarray, int]:
    """The clip as evaluated: mono, cropped, loudness-normalised if asked, at its own sample rate."""
    audio, sampling_rate = read_audio_record(record)
    clip = audio.mean(axis=0)
    if settings.clip_seconds is not None:
        clip = clip[: round(settings.clip_seconds * sampling_rate)]
    if not np.isfinite(clip).all():
        raise ValueError("the clip holds NaN or infinite samples")
    if settings.input_loudness is not None:
        clip = audio_io.normalize_loudness(clip[None], sampling_rate, settings.input_loudness, limit_peak=True)[0][0]
    return clip.astype(np.float32), sampling_rate


def _reconstruct_at_metric_rate(
    model, clip: np.ndarray, sampling_rate: int, n_quantizers_list: Sequence[int], settings: _ClipSettings
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The clip and its reconstructions, loudness-matched if asked, at the metric rate and of one length."""
    model_input = audio_io.resample(clip, sampling_rate, settings.sampling_rate)
    reconstructions = reconstruct_at_bitrates(model, model_input, n_quantizers_list)
    # Measured on what the model encodes, as the official decompress restores it: a clip at a higher rate than
    # the model's also holds a band the model never sees, and matching its loudness would be a gain error.
    clip_loudness = audio_io.integrated_loudness(model_input[None], settings.sampling_rate)
    reference = audio_io.resample(clip, sampling_rate, settings.metric_rate)
    estimates = {}
    for n_quantizers, reconstruction in reconstructions.items():
        if settings.match_loudness and np.isfinite(clip_loudness):
            reconstruction = audio_io.normalize_loudness(reconstruction[None], settings.sampling_rate, clip_loudness)
            reconstruction = reconstruction[0][0]
        estimates[n_quantizers] = audio_io.resample(reconstruction, settings.sampling_rate, settings.metric_rate)
    length = min([len(reference)] + [len(estimate) for estimate in estimates.values()])
    return reference[:length], {n: estimate[:length] for n, estimate in estimates.items()}


def _measure(reference: np.ndarray, estimate: np.ndarray, sampling_rate: int, keys: Sequence[str]) -> dict:
    """
    `{key: value}` of the metrics `keys` (report keys of `EVALUATION_METRICS`), `None` where not finite; a metric
    that refuses the pair (ViSQOL needs about 1 s of audio) raises a ValueError naming it.
    """
    values = {}
    for key, function in EVALUATION_METRICS.values():
        if key in keys:
            try:
                value = function(reference, estimate, sampling_rate)
            except ValueError as error:
                raise ValueError(f"{key} cannot be computed on this clip: {error}") from error
            values[key] = float(value) if np.isfinite(value) else None
    return values


def evaluate_model(
    model,
    data: str,
    output_dir: str | Path,
    n_quantizers_list: Sequence[int] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    max_clips: int | None = None,
    clip_seconds: float | None = None,
    resample_to: int | None = None,
    input_loudness: float | None = None,
    match_loudness: bool = True,
    split: str | None = None,
    dataset_config: str | None = None,
    audio_column: str | None = None,
    streaming: bool = False,
    spectrogram_clips: int = 3,
    progress: bool = True,
) -> dict:
    """
    Evaluate `model` (a `DacModel`, on the device it is on; run in eval mode, its mode restored after) on `data`
    and write into `output_dir`: `results.jsonl` (one line per clip and bitrate, appended as they complete),
    `run.json` (what the results depend on), `report.json`, `report.md`, `metrics_vs_bitrate.png` and
    `spectrograms/NNN_<clip>.png` for the first `spectrogram_clips` clips. Returns the report (as report.json).

    Args:
        data: a folder of audio files, a parquet file or folder, a `save_to_disk` directory or a hub dataset id
            (see `modeling_dac.audio_datasets.load_audio_dataset`; `split`, `dataset_config`, `audio_column` and
            `streaming` are passed on).
        n_quantizers_list: numbers of codebooks to evaluate (default: all of them).
        metrics: names from `EVALUATION_METRICS`: "mel", "stft", "visqol", "sisdr".
        max_clips: evaluate the first `max_clips` records only.
        clip_seconds: keep the first `clip_seconds` of each clip (the paper used 10 s clips).
        resample_to: sample rate of the metrics (default: the model's; the paper's table is at 44100).
        input_loudness: normalise each clip to this integrated loudness in LUFS first (the paper's test clips
            are at -16); `None` keeps the clips as they are.
        match_loudness: scale each reconstruction to the clip's loudness before measuring, as the official code.
        progress: show a tqdm progress bar.

    A rerun into the same `output_dir` skips the `(clip, n_quantizers)` pairs whose requested metrics are already
    in `results.jsonl` (a metric added later is computed alone); it refuses a directory written with other
    weights, data or clip settings. Clips that cannot be read, are too short for the spectral distances or that a
    metric refuses (ViSQOL needs about 1 s) are skipped and listed in the report.
    """
    from tqdm.auto import tqdm

    config = model.config
    n_quantizers_list = _validate_n_quantizers(n_quantizers_list, config.n_codebooks)
    metric_keys = [EVALUATION_METRICS[name][0] for name in validate_metrics(metrics)]
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}.")
    if clip_seconds is not None and clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}.")
    if resample_to is not None and resample_to <= 0:
        raise ValueError(f"resample_to must be a positive sample rate in Hz, got {resample_to}.")
    clip_settings = _ClipSettings(
        config.sampling_rate, int(resample_to or config.sampling_rate), clip_seconds, input_loudness, match_loudness
    )

    data_path = Path(data)
    folder = Path(os.path.abspath(data_path)) if data_path.is_dir() else None  # as the records' paths
    settings = {
        "data": str(data_path.resolve()) if data_path.exists() else data,
        "split": split,
        "dataset_config": dataset_config,
        "audio_column": audio_column,
        "clip_seconds": clip_seconds,
        "input_loudness": input_loudness,
        "match_loudness": match_loudness,
        # Where the loudness a reconstruction is matched to is measured; results of earlier versions (the clip's
        # own rate) are not mixed with these.
        "loudness_measured_at": "model_rate" if match_loudness else None,
        "metric_sampling_rate": clip_settings.metric_rate,
    }
    # Loaded first: a wrong source, split or column must not leave a run.json that refuses the corrected run.
    dataset = load_audio_dataset(data, split=split, name=dataset_config, column=audio_column, streaming=streaming)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_run_file(output_dir, {"model_weights_sha256": _weights_sha256(model), **settings})

    results_path = output_dir / RESULTS_FILE
    _drop_cut_last_line(results_path)
    done = {pair: set(row["metrics"]) for pair, row in merge_results(read_results(results_path)).items()}
    bitrates = {n: config.bitrate_at(n) / 1000 for n in n_quantizers_list}
    clip_ids, skipped, plotted = [], [], 0
    total = None if streaming else min(len(dataset), max_clips or len(dataset))
    with eval_mode(model):
        for index, record in tqdm(
            _records(dataset, max_clips), total=total, desc="dac eval", unit="clip", disable=not progress
        ):
            clip_id, name = _clip_identity(index, record, folder)
            missing = {n: [key for key in metric_keys if key not in done.get((clip_id, n), ())] for n in bitrates}
            missing = {n: keys for n, keys in missing.items() if keys}
            spectrogram_path = _spectrogram_path(output_dir, plotted, name)
            wants_plot = plotted < spectrogram_clips and (bool(missing) or not spectrogram_path.exists())
            if missing or wants_plot:
                try:
                    clip, sampling_rate = _prepare_clip(record, clip_settings)
                except ValueError as error:
                    skipped.append({"clip_id": clip_id, "name": name, "reason": str(error)})
                    continue
                needed_samples = _MINIMUM_SAMPLES * sampling_rate / clip_settings.metric_rate
                if len(clip) < needed_samples:
                    reason = f"{len(clip) / sampling_rate:.3f} s is too short for the spectral distances"
                    skipped.append({"clip_id": clip_id, "name": name, "reason": reason})
                    continue
                reference, estimates = _reconstruct_at_metric_rate(
                    model, clip, sampling_rate, n_quantizers_list if wants_plot else sorted(missing), clip_settings
                )
                try:  # every bitrate before any row, so that a clip a metric refuses leaves no partial results
                    measured = {
                        n_quantizers: _measure(reference, estimates[n_quantizers], clip_settings.metric_rate, keys)
                        for n_quantizers, keys in missing.items()
                    }
                except ValueError as error:
                    skipped.append({"clip_id": clip_id, "name": name, "reason": str(error)})
                    continue
                for n_quantizers, values in measured.items():
                    row = {
                        "clip_id": clip_id,
                        "name": name,
                        "n_quantizers": n_quantizers,
                        "bitrate_kbps": bitrates[n_quantizers],
                        "duration_seconds": len(clip) / sampling_rate,
                        "metrics": values,
                    }
                    _append_result(results_path, row)
                if wants_plot:
                    rate = clip_settings.metric_rate
                    plot_spectrograms(reference, estimates, rate, bitrates, f"{name} ({rate} Hz)", spectrogram_path)
            clip_ids.append(clip_id)
            plotted += plotted < spectrogram_clips

    model_info = {
        "name_or_path": config.name_or_path or type(model).__name__,
        "sampling_rate": config.sampling_rate,
        "n_codebooks": config.n_codebooks,
        "codebook_size": config.codebook_size,
        "frame_rate": config.frame_rate,
    }
    settings |= {"n_quantizers": n_quantizers_list, "metrics": metric_keys, "max_clips": max_clips}
    rows = read_results(results_path)
    report = build_report(rows, clip_ids, n_quantizers_list, metric_keys, model_info, settings, skipped)
    write_report(report, output_dir)
    plot_metrics_against_bitrate(report, output_dir / BITRATE_PLOT_FILE)
    return report
