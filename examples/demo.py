"""The main job end to end, offline: compress the bundled clip to .dac, decompress it, measure it.

    python examples/demo.py --output_dir demo_output [--model DIR_OR_HUB_ID] [--audio FILE]

Writes `<output_dir>/speech_and_music.dac`, the original and the reconstruction as wav, and
`spectrograms.png` (original above reconstruction); prints bitrate, compression ratio, mel distance, STFT
distance and SI-SDR. Without `--model` it uses `DEFAULT_MODEL` when that checkpoint exists, otherwise a model
converted from the official-format test fixture, whose weights are random (the printout says so).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from modeling_dac import DacFile, DacModel
from modeling_dac.audio import load_audio, resample, save_audio
from modeling_dac.conversion import convert_official_checkpoint
from modeling_dac.evaluation_plots import plot_spectrograms
from modeling_dac.metrics import mel_distance, si_sdr, stft_distance

REPO = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO / "examples" / "audio" / "speech_and_music.flac"
DEFAULT_MODEL = REPO / "checkpoints" / "dac_reference"
FIXTURE = REPO / "tests" / "fixtures" / "reference" / "dac_44khz"


def untrained_fixture_model(output_dir: Path) -> DacModel:
    """The reduced-width 44.1 kHz fixture, written as an official .pth and converted with `dac convert`'s code."""
    kwargs = json.loads(FIXTURE.with_suffix(".json").read_text())["kwargs"]
    checkpoint = output_dir / "untrained_fixture.pth"
    state_dict = load_file(f"{FIXTURE}_state_dict.safetensors")
    torch.save({"state_dict": state_dict, "metadata": {"kwargs": kwargs}}, checkpoint)
    return convert_official_checkpoint(checkpoint, output_dir / "untrained_model", overwrite=True)  # the demo's own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", "--output-dir", type=Path, default=Path("demo_output"))
    parser.add_argument("--model", help="save_pretrained directory or hub id (default: the shipped checkpoint)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)

    if args.model or DEFAULT_MODEL.is_dir():
        model = DacModel.from_pretrained(args.model or DEFAULT_MODEL)
        print(f"Model: {args.model or DEFAULT_MODEL}")
        if not args.model:
            print(
                "NOTE: this is the project's small reference codec (16 kHz, 3 kbps, trained about 6 hours on a CPU): it "
                "keeps pitch and rhythm but sounds noisy; see checkpoints/dac_reference/README.md for its metrics."
            )
    else:
        model = untrained_fixture_model(args.output_dir)
        print(
            "NOTE: no trained checkpoint is installed, so this demo uses a model with RANDOM, UNTRAINED weights "
            "(the official-format test fixture). The round trip, file format and figures are real; the sound "
            "quality is not. Pass --model with a trained checkpoint for a meaningful reconstruction."
        )

    audio, sampling_rate = load_audio(args.audio)
    stem = args.audio.stem
    dac_path = args.output_dir / f"{stem}.dac"
    model.compress(audio, sampling_rate, show_progress=True).save(dac_path)
    reconstruction = model.decompress(DacFile.load(dac_path), show_progress=True)
    save_audio(args.output_dir / f"{stem}_original.wav", audio, sampling_rate)
    save_audio(args.output_dir / f"{stem}_reconstructed.wav", reconstruction, sampling_rate)

    config = model.config
    duration = audio.shape[1] / sampling_rate
    channels = audio.shape[0]
    pcm_bits = 16 * sampling_rate * channels * duration
    rate = config.sampling_rate
    reference = resample(audio.mean(0), sampling_rate, rate)
    estimate = resample(reconstruction.mean(0), sampling_rate, rate)
    plot_spectrograms(
        reference, {config.n_codebooks: estimate}, rate, {config.n_codebooks: config.bitrate / 1000},
        f"{stem}: original and reconstruction", args.output_dir / "spectrograms.png",
    )
    print(f"Audio: {args.audio.name}, {duration:.2f} s, {channels} channel(s), {sampling_rate} Hz")
    print(f"Codes: {DacFile.load(dac_path).codes.shape} (channels, codebooks, frames) -> {dac_path}")
    print(f"Bitrate: {config.bitrate / 1000 * channels:.2f} kbps ({config.n_codebooks} codebooks x "
          f"{np.log2(config.codebook_size):.0f} bits x {config.frame_rate:.2f} frames/s x {channels} channel(s))")
    print(f"Compression ratio vs 16-bit PCM: {pcm_bits / (config.bitrate * channels * duration):.1f}x "
          f"(.dac file on disk: {dac_path.stat().st_size} bytes with metadata)")
    print(f"Mel distance: {mel_distance(reference, estimate, rate):.3f}   "
          f"STFT distance: {stft_distance(reference, estimate, rate):.3f}   "
          f"SI-SDR: {si_sdr(reference, estimate, rate):.2f} dB")
    print(f"Wrote {args.output_dir}/: {stem}.dac, {stem}_original.wav, {stem}_reconstructed.wav, spectrograms.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
