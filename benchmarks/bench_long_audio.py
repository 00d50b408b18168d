"""Peak memory and speed of the file-to-file path (`compress_file` then `decompress_file`) against audio length.

Each length runs in a fresh process so that its peak resident set size (`resource.getrusage().ru_maxrss`)
belongs to that run alone. The input is a synthetic mono 44.1 kHz WAV (noise and tones with a slowly varying
level), written block by block beforehand. The model has the 44.1 kHz model's strides ([2, 4, 8, 8], hop
512), 9 codebooks of 1024, random weights, and its widths divided by `--width-divisor` (16 by default: the
full model runs at about a seventh of real time on two CPU cores, too slow for an hour of audio). Activation
memory scales with the width, so a full-width run over a short file (`--width-divisor 1 --minutes 0.2`)
gives the full model's per-window peak; the windows, and hence the peak, do not depend on the length.

    python benchmarks/bench_long_audio.py --minutes 10 60
    python benchmarks/bench_long_audio.py --minutes 0.2 0.5 --width-divisor 1
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

SAMPLING_RATE = 44100


def write_input(path: Path, minutes: float, block_seconds: float = 10.0) -> None:
    """A mono 16-bit WAV of `minutes` of noise plus tones, written one block at a time."""
    import soundfile

    rng = np.random.default_rng(0)
    total = int(minutes * 60 * SAMPLING_RATE)
    block = int(block_seconds * SAMPLING_RATE)
    with soundfile.SoundFile(str(path), "w", SAMPLING_RATE, 1, subtype="PCM_16", format="WAV") as sink:
        for start in range(0, total, block):
            time_axis = np.arange(start, min(total, start + block)) / SAMPLING_RATE
            level = 0.1 + 0.08 * np.sin(2 * np.pi * time_axis / 7.0)
            tones = np.sin(2 * np.pi * 220.0 * time_axis) + 0.5 * np.sin(2 * np.pi * 1375.0 * time_axis)
            audio = level * (0.5 * tones + 0.3 * rng.standard_normal(time_axis.shape))
            sink.write(audio.astype(np.float32))


def torch_version() -> str:
    import torch

    return torch.__version__


def peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_child(args: argparse.Namespace) -> None:
    """Encode and decode `args.input` in this process and print one JSON line of measurements."""
    import torch

    from modeling_dac import DacConfig, DacModel
    from modeling_dac.compression import compress_file, decompress_file
    from modeling_dac.windowing import encoder_context, window_frames

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DacConfig(
        encoder_hidden_size=64 // args.width_divisor,
        decoder_hidden_size=1536 // args.width_divisor,
        downsampling_ratios=[2, 4, 8, 8],
        n_codebooks=9,
        codebook_size=1024,
        sampling_rate=SAMPLING_RATE,
    )
    model = DacModel(config).eval()
    rss_model = peak_rss_mb()
    dac_path, output_path = Path(args.input).with_suffix(".dac"), Path(args.input).with_suffix(".out.wav")
    started = time.perf_counter()
    compress_file(model, args.input, dac_path, window_duration=args.window_duration, batch_size=args.batch_size)
    encoded = time.perf_counter()
    rss_encode = peak_rss_mb()
    decompress_file(model, dac_path, output_path, window_duration=args.window_duration, batch_size=args.batch_size)
    decoded = time.perf_counter()
    frames = window_frames(config, encoder_context(config), args.window_duration, items=args.batch_size)
    print(
        json.dumps(
            {
                "minutes": args.minutes[0],
                "width_divisor": args.width_divisor,
                "threads": args.threads,
                "parameters_m": round(model.num_parameters() / 1e6, 3),
                "encoder_window_s": round(frames / config.frame_rate, 2),
                "rss_after_model_load_mb": round(rss_model, 1),
                "peak_rss_encode_mb": round(rss_encode, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "encode_s": round(encoded - started, 1),
                "decode_s": round(decoded - encoded, 1),
                "dac_file_mb": round(dac_path.stat().st_size / 2**20, 2),
            }
        )
    )
    dac_path.unlink()
    output_path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0], help="audio lengths to measure")
    parser.add_argument("--width-divisor", type=int, default=16, help="divide the 44.1 kHz model's widths by this")
    parser.add_argument("--window-duration", type=float, default=None, help="seconds per window (default: auto)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per model call")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine a second thread mostly waits for a time slice)",
    )
    parser.add_argument("--workdir", default=None, help="directory for the temporary audio files")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"# {date.today()} on {machine}, Python {platform.python_version()}, torch {torch_version()}")
    rows = []
    if args.workdir is not None:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for minutes in args.minutes:
            input_path = Path(workdir) / f"input_{minutes:g}min.wav"
            write_input(input_path, minutes)
            command = [sys.executable, __file__, "--child", "--input", str(input_path), "--minutes", f"{minutes:g}"]
            command += ["--width-divisor", str(args.width_divisor), "--batch-size", str(args.batch_size)]
            command += ["--threads", str(args.threads)]
            if args.window_duration is not None:
                command += ["--window-duration", str(args.window_duration)]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            input_path.unlink()
            print(json.dumps(rows[-1]), flush=True)
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")


if __name__ == "__main__":
    main()
