"""PNG figures of a `dac eval` run: each metric against bitrate, and spectrograms of originals and reconstructions.

Figures are drawn with matplotlib's Agg canvas through the object-oriented API (no pyplot, no global backend
change), so they render on machines without a display and leave the caller's matplotlib state alone.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_path
from .evaluation_report import METRIC_COLUMNS

__all__ = ["log_spectrogram", "plot_metrics_against_bitrate", "plot_spectrograms"]

_DYNAMIC_RANGE_DB = 80.0


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: Path) -> None:
    with atomic_write_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)


def plot_metrics_against_bitrate(report: dict, path: str | Path) -> None:
    """One panel per metric of `report` (from `build_report`): the mean at each bitrate with its 95% CI as bars."""
    aggregate = [row for row in report["aggregate"] if row["bitrate_kbps"] is not None]
    keys = {key for row in aggregate for key, statistics in row["metrics"].items() if statistics["mean"] is not None}
    columns = [column for column in METRIC_COLUMNS if column.key in keys]
    if not columns:
        return
    figure = _new_figure(3.2 * len(columns), 3.0)
    for axes, column in zip(np.atleast_1d(figure.subplots(1, len(columns))), columns):
        points = [(row["bitrate_kbps"], row["metrics"][column.key]) for row in aggregate]
        points = [(bitrate, statistics) for bitrate, statistics in points if statistics["mean"] is not None]
        bitrates = [bitrate for bitrate, _ in points]
        means = np.array([statistics["mean"] for _, statistics in points])
        # With a single clip there is no interval: the bar collapses onto the mean.
        lows = np.array([s["mean"] if s["ci_low"] is None else s["ci_low"] for _, s in points])
        highs = np.array([s["mean"] if s["ci_high"] is None else s["ci_high"] for _, s in points])
        axes.errorbar(bitrates, means, yerr=[means - lows, highs - means], marker="o", capsize=3)
        axes.set_xlabel("bitrate (kbps)")
        axes.set_title(f"{column.label} ({'higher' if column.higher_is_better else 'lower'} is better)", fontsize=9)
        axes.grid(alpha=0.3)
    figure.suptitle(f"{report['model']['name_or_path']}: mean and 95% CI over {report['num_clips']} clips", fontsize=9)
    _save_png(figure, Path(path))


def log_spectrogram(audio: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, int]:
    """
    Magnitude in dB (`20 log10 max(|X|, 1e-5)`) of a Hann-window STFT with a window of about 40 ms (a power of
    two) and a hop of a quarter window, as `(frequency_bins, frames)`; also returns the window length.
    """
    window_length = 2 ** max(6, round(math.log2(sampling_rate * 0.04)))
    spectrum = torch.stft(
        torch.as_tensor(np.asarray(audio, dtype=np.float32)),
        n_fft=window_length,
        hop_length=window_length // 4,
        window=torch.hann_window(window_length),
        center=True,
        return_complex=True,
    )
    return 20 * np.log10(np.maximum(spectrum.abs().numpy(), 1e-5)), window_length


def plot_spectrograms(
    reference: np.ndarray,
    reconstructions: Mapping[int, np.ndarray],
    sampling_rate: int,
    bitrates_kbps: Mapping[int, float],
    title: str,
    path: str | Path,
) -> None:
    """
    The spectrogram of `reference` above those of `reconstructions` (`{n_quantizers: audio}`, all mono at
    `sampling_rate`), on one colour scale spanning 80 dB below the loudest bin.
    """
    panels: Sequence[tuple[str, np.ndarray]] = [("original", reference)] + [
        (f"{n_quantizers} codebook{'s' * (n_quantizers > 1)}, {bitrates_kbps[n_quantizers]:.2f} kbps", audio)
        for n_quantizers, audio in sorted(reconstructions.items())
    ]
    spectrograms = [log_spectrogram(audio, sampling_rate)[0] for _, audio in panels]
    loudest = max(float(spectrogram.max()) for spectrogram in spectrograms)
    duration = len(reference) / sampling_rate
    figure = _new_figure(8.0, 1.9 * len(panels))
    all_axes = np.atleast_1d(figure.subplots(len(panels), 1, sharex=True))
    for axes, (label, _), spectrogram in zip(all_axes, panels, spectrograms):
        image = axes.imshow(
            spectrogram,
            origin="lower",
            aspect="auto",
            extent=(0.0, duration, 0.0, sampling_rate / 2000),
            vmin=loudest - _DYNAMIC_RANGE_DB,
            vmax=loudest,
            cmap="magma",
        )
        axes.set_ylabel("kHz")
        axes.set_title(label, fontsize=9, loc="left")
    all_axes[-1].set_xlabel("time (s)")
    figure.colorbar(image, ax=list(all_axes), label="dB")
    figure.suptitle(title, fontsize=9)
    _save_png(figure, Path(path))
