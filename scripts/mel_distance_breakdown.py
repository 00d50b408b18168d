"""Where a codec's mel distance comes from: the share due to time-frequency bins where the original is quiet.

    python scripts/mel_distance_breakdown.py --model checkpoints/dac_reference --data data/reference/heldout

For each clip (mixed to mono, reconstructed at full bitrate and scaled to the clip's loudness, as `dac eval`
does), the mel distance of `modeling_dac.metrics` is split into the part from mel bins whose original magnitude
is below `--quiet_below` and the rest. Synthesised audio has spectral valleys far deeper than recordings (pure
tones, band-limited noise, digital silence); there the log distance counts a codec's noise floor in full.
Prints one markdown row per category (the dataset's `category` column, when it has one).
"""

import argparse
from collections import defaultdict

import numpy as np
import torch

from modeling_dac import DacModel
from modeling_dac import audio as audio_io
from modeling_dac.audio_datasets import load_audio_dataset, read_audio_record
from modeling_dac.evaluation import reconstruct_at_bitrates
from modeling_dac.metrics import DacMelDistance

__all__ = ["main", "split_mel_distance"]


def split_mel_distance(
    metric: DacMelDistance, reference: np.ndarray, estimate: np.ndarray, quiet_below: float
) -> tuple[float, float, float]:
    """
    The mel distance of mono `estimate` to `reference`, the part of it from bins where `reference` is quiet, and
    the fraction of bins that are quiet (averaged over the scales).
    """
    reference_mels = metric.spectrograms(torch.from_numpy(reference)[None])
    estimate_mels = metric.spectrograms(torch.from_numpy(estimate)[None])
    total, quiet, quiet_fraction = 0.0, 0.0, 0.0
    for reference_mel, estimate_mel in zip(reference_mels, estimate_mels):
        difference = (metric.log_magnitude(estimate_mel) - metric.log_magnitude(reference_mel)).abs()
        total += difference.mean().item()
        is_quiet = reference_mel < quiet_below
        quiet += (difference * is_quiet).sum().item() / difference.numel()
        quiet_fraction += is_quiet.float().mean().item() / len(reference_mels)
    return total, quiet, quiet_fraction


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="save_pretrained folder of a DacModel")
    parser.add_argument("--data", required=True, help="audio folder, parquet or saved dataset (see `dac eval`)")
    parser.add_argument("--quiet_below", type=float, default=1e-3, help="mel magnitude below which a bin is quiet")
    args = parser.parse_args(argv)

    model = DacModel.from_pretrained(args.model).eval()
    rate = model.config.sampling_rate
    metric = DacMelDistance(rate)
    dataset = load_audio_dataset(args.data, keep_columns=True)
    rows = defaultdict(list)
    for record in dataset:
        audio, clip_rate = read_audio_record(record["audio"])
        clip = audio_io.resample(audio.mean(axis=0), clip_rate, rate)
        reconstruction = reconstruct_at_bitrates(model, clip, [model.config.n_codebooks])[model.config.n_codebooks]
        loudness = audio_io.integrated_loudness(clip[None], rate)
        reconstruction = audio_io.normalize_loudness(reconstruction[None], rate, loudness)[0][0]
        rows[record.get("category", "all")].append(split_mel_distance(metric, clip, reconstruction, args.quiet_below))

    print(f"| category | clips | mel distance | from bins below {args.quiet_below:g} | share | such bins |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for category, values in rows.items():
        total, quiet, quiet_fraction = np.mean(values, axis=0)
        share = quiet / total
        print(f"| {category} | {len(values)} | {total:.3f} | {quiet:.3f} | {share:.0%} | {quiet_fraction:.0%} |")


if __name__ == "__main__":
    main()
