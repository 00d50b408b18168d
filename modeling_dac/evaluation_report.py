"""Aggregate per-clip codec metrics into the report `dac eval` writes: statistics, report.json and report.md.

Each mean comes with a 95% confidence interval from Student's t-distribution over the clips:
`mean ± t(0.975, n - 1) · s / √n`, with `s` the sample standard deviation (ddof 1). It needs two clips or more;
with one clip the interval is `null` in JSON and "n/a" in markdown.
"""

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_path

__all__ = [
    "CONFIDENCE_LEVEL",
    "METRIC_COLUMNS",
    "PAPER_DAC_RESULTS",
    "DacMetricColumn",
    "build_report",
    "mean_confidence_interval",
    "merge_results",
    "render_markdown",
    "write_report",
]

CONFIDENCE_LEVEL = 0.95


@dataclass(frozen=True)
class DacMetricColumn:
    """One metric column of the report: its key in report.json, its heading, which direction is better, digits."""

    key: str
    label: str
    higher_is_better: bool
    decimals: int


# The paper's column order: mel distance, STFT distance, ViSQOL, SI-SDR.
METRIC_COLUMNS = (
    DacMetricColumn("mel_distance", "mel distance", higher_is_better=False, decimals=3),
    DacMetricColumn("stft_distance", "STFT distance", higher_is_better=False, decimals=3),
    DacMetricColumn("visqol", "ViSQOL", higher_is_better=True, decimals=3),
    DacMetricColumn("si_sdr", "SI-SDR (dB)", higher_is_better=True, decimals=2),
)

# Table 1 of Kumar et al. (2023): the 44.1 kHz model at 8 kbps (9 codebooks), 44.1 kHz test set, 10 s clips.
PAPER_DAC_RESULTS = {"bitrate_kbps": 8.0, "mel_distance": 0.93, "stft_distance": 1.60, "visqol": 4.18, "si_sdr": 10.75}


def mean_confidence_interval(values: Iterable[float], confidence: float = CONFIDENCE_LEVEL) -> dict:
    """
    `{"mean", "std", "ci_low", "ci_high", "num_clips"}` of `values`: the t-distribution interval at `confidence`
    (`ci_low`/`ci_high` and `std` are `None` for fewer than two values; everything is `None` for none).
    """
    from scipy.stats import t as student_t

    values = np.asarray(list(values), dtype=np.float64)
    count = len(values)
    if count == 0:
        return {"mean": None, "std": None, "ci_low": None, "ci_high": None, "num_clips": 0}
    mean = float(values.mean())
    if count < 2:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None, "num_clips": 1}
    std = float(values.std(ddof=1))
    half_width = float(student_t.ppf((1 + confidence) / 2, count - 1)) * std / math.sqrt(count)
    return {"mean": mean, "std": std, "ci_low": mean - half_width, "ci_high": mean + half_width, "num_clips": count}


def merge_results(rows: Iterable[dict]) -> dict[tuple[str, int], dict]:
    """
    Per `(clip_id, n_quantizers)`, the row with the metrics of every row for that pair merged in order (a later
    value of a metric replaces an earlier one), as appended by successive runs of `dac eval`.
    """
    merged: dict[tuple[str, int], dict] = {}
    for row in rows:
        key = (row["clip_id"], int(row["n_quantizers"]))
        previous = merged.get(key, {"metrics": {}})
        merged[key] = {**previous, **row, "metrics": {**previous["metrics"], **row["metrics"]}}
    return merged


def build_report(
    rows: Iterable[dict],
    clip_ids: Sequence[str],
    n_quantizers_list: Sequence[int],
    metric_keys: Sequence[str],
    model: dict,
    settings: dict,
    skipped: Sequence[dict] = (),
) -> dict:
    """
    The report of `clip_ids` at each of `n_quantizers_list` for `metric_keys`, from result rows
    (`{"clip_id", "name", "n_quantizers", "bitrate_kbps", "duration_seconds", "metrics": {key: value}}`).
    Rows of other clips or bitrates are left out; `None` values (a metric that was not finite) are left out of
    the statistics. `model`, `settings` and `skipped` are copied into the report.
    """
    merged = merge_results(rows)
    columns = [column for column in METRIC_COLUMNS if column.key in metric_keys]
    clips, aggregate = [], []
    for clip_id in clip_ids:
        for n_quantizers in n_quantizers_list:
            row = merged.get((clip_id, n_quantizers))
            if row is not None:
                clips.append(
                    {key: row[key] for key in ("clip_id", "name", "n_quantizers", "bitrate_kbps", "duration_seconds")}
                    | {column.key: row["metrics"].get(column.key) for column in columns}
                )
    for n_quantizers in n_quantizers_list:
        at_bitrate = [clip for clip in clips if clip["n_quantizers"] == n_quantizers]
        statistics = {
            column.key: mean_confidence_interval(
                clip[column.key] for clip in at_bitrate if clip[column.key] is not None
            )
            for column in columns
        }
        bitrate = at_bitrate[0]["bitrate_kbps"] if at_bitrate else None
        aggregate.append(
            {"n_quantizers": n_quantizers, "bitrate_kbps": bitrate, "num_clips": len(at_bitrate), "metrics": statistics}
        )
    return {
        "model": model,
        "settings": settings,
        "confidence_interval": f"{CONFIDENCE_LEVEL:.0%}, Student's t-distribution over clips",
        "num_clips": len({clip["clip_id"] for clip in clips}),
        "aggregate": aggregate,
        "clips": clips,
        "skipped": list(skipped),
    }


def _cell(statistics: dict, decimals: int) -> str:
    if statistics["mean"] is None:
        return "n/a"
    if statistics["ci_low"] is None:
        return f"{statistics['mean']:.{decimals}f} (1 clip, no CI)"
    half_width = (statistics["ci_high"] - statistics["ci_low"]) / 2
    return f"{statistics['mean']:.{decimals}f} ± {half_width:.{decimals}f}"


def render_markdown(report: dict) -> str:
    """report.md: the settings, then the table in the paper's layout (bitrate, mel, STFT, ViSQOL, SI-SDR)."""
    model, settings = report["model"], report["settings"]
    metric_keys = {key for row in report["aggregate"] for key in row["metrics"]}
    columns = [column for column in METRIC_COLUMNS if column.key in metric_keys]
    arrows = {True: "↑", False: "↓"}
    clip_length = f"first {settings['clip_seconds']:g} s" if settings["clip_seconds"] else "whole"
    loudness = "" if settings["input_loudness"] is None else f", normalised to {settings['input_loudness']:g} LUFS"
    lines = [
        "# DAC evaluation",
        "",
        f"- model: `{model['name_or_path']}` ({model['sampling_rate']} Hz, {model['n_codebooks']} codebooks of "
        f"{model['codebook_size']}, {model['frame_rate']:.2f} frames/s)",
        f"- data: `{settings['data']}`, {report['num_clips']} clip{'' if report['num_clips'] == 1 else 's'}"
        + (f" ({len(report['skipped'])} skipped, listed in report.json)" if report["skipped"] else ""),
        f"- clips: mono, {clip_length}{loudness}; reconstructions "
        f"{'scaled to the loudness of the clip' if settings['match_loudness'] else 'as decoded'}; "
        f"metrics at {settings['metric_sampling_rate']} Hz",
        f"- each cell: mean ± half-width of the {report['confidence_interval']}",
        "",
        "| bitrate (kbps) | codebooks | "
        + " | ".join(f"{column.label} {arrows[column.higher_is_better]}" for column in columns)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in report["aggregate"]:
        bitrate = "n/a" if row["bitrate_kbps"] is None else f"{row['bitrate_kbps']:.2f}"
        cells = [_cell(row["metrics"][column.key], column.decimals) for column in columns]
        lines.append(f"| {bitrate} | {row['n_quantizers']} | " + " | ".join(cells) + " |")
    paper = PAPER_DAC_RESULTS
    lines += [
        "",
        f"Paper (DAC 44.1 kHz, {paper['bitrate_kbps']:g} kbps = 9 codebooks, 44.1 kHz test set, 10 s clips): "
        + ", ".join(f"{column.label} {paper[column.key]:.2f}" for column in METRIC_COLUMNS)
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict, output_dir: str | Path) -> None:
    """Write `report.json` and `report.md` into `output_dir`, each atomically."""
    output_dir = Path(output_dir)
    with atomic_write_path(output_dir / "report.json") as temporary:
        temporary.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    with atomic_write_path(output_dir / "report.md") as temporary:
        temporary.write_text(render_markdown(report))
