"""Throughput of dataset tokenization: hours of audio turned into DAC codes per hour of wall time.

Writes a few clips of noise at the source rate, builds the full model of `--config` with random weights
(speed does not depend on the weights), and times `tokenize_dataset` end to end (reading, resampling, encoding,
writing the Arrow column) for each batch size, after one warm-up call. Prints a markdown table for
docs/benchmarks.md.

    python benchmarks/bench_tokenize.py --clips 4 --seconds 5 --batch-sizes 1,4
    python benchmarks/bench_tokenize.py --device cuda --clips 64 --seconds 10 --batch-sizes 1,16,64
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Audio, Dataset

from modeling_dac import DacConfig, DacModel
from modeling_dac.audio import save_audio
from modeling_dac.tokenization import tokenize_dataset

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "hub_configs" / "dac_44khz"), help="model config directory")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument(
        "--source-rate", type=int, default=44100, help="sample rate of the files (resampled if not the model's)"
    )
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = DacConfig.from_pretrained(args.config)
    model = DacModel(config).eval().to(args.device)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(args.clips):
            length = int(args.seconds * args.source_rate)
            noise = np.cumsum(rng.standard_normal(length)).astype(np.float32)  # brown noise: energy in the lows
            noise = 0.3 * (noise - noise.mean()) / (np.abs(noise).max() + 1e-9)
            paths.append(str(Path(folder) / f"clip{index}.wav"))
            save_audio(paths[-1], noise, args.source_rate)
        dataset = Dataset.from_dict({"audio": paths}).cast_column("audio", Audio(decode=False))
        tokenize_dataset(dataset.select([0]), model, batch_size=1, device=args.device)  # warm-up

        audio_hours = args.clips * args.seconds / 3600
        device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
        print(
            f"model {Path(args.config).name} ({config.sampling_rate} Hz, {config.n_codebooks} codebooks), "
            f"{args.clips} clips x {args.seconds:g} s at {args.source_rate} Hz, device {args.device} ({device_name}), "
            f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
        )
        print("| batch size | wall time (s) | hours of audio per hour | real-time factor |")
        print("| --- | --- | --- | --- |")
        for batch_size in (int(size) for size in args.batch_sizes.split(",")):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokenized = tokenize_dataset(dataset, model, batch_size=batch_size, device=args.device)
            elapsed = time.perf_counter() - start
            assert len(tokenized) == args.clips
            throughput = audio_hours / (elapsed / 3600)
            print(f"| {batch_size} | {elapsed:.1f} | {throughput:.2f} | {1 / throughput:.2f} |")


if __name__ == "__main__":
    main()
