"""Side-by-side inference benchmark: our `DacModel`, `transformers.DacModel` and the official package.

All implementations hold the very same weights (random by default, or `--checkpoint DIR`) and process the very
same audio; their runs alternate inside one loop (ours, transformers, official, ours, ...), so that load on a
shared machine hits them alike. Each cell is the median over `--repetitions`; the "x transformers" columns are
medians of the per-repetition ratios (paired, so slow drift of the machine cancels out).

Reported per config, precision and duration: encode alone (tokenization), decode alone, both; the real-time
factor (processing seconds per audio second); wall and CPU seconds; achieved GFLOP/s and the fraction of the
matmul peak measured at the start at the same thread count; peak memory of the call. Then batch throughput
(seconds of audio per second) at several batch sizes. `--quality` measures what bf16 (and `--compile`) cost:
the fraction of codes that change and the mel distance between the fp32 and the other reconstruction.

    python benchmarks/bench_inference.py                       # what `make bench` runs
    python benchmarks/bench_inference.py --dtypes fp32,bf16 --quality --compile
    python benchmarks/bench_inference.py --official-python /tmp/official_venv/bin/python
    python benchmarks/bench_inference.py --quick                # seconds-long smoke run (tests)

The official package is timed in a subprocess with its own interpreter (`benchmarks/official_worker.py`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    DTYPES,
    Timer,
    cast_for_inference,
    count_gflop_per_second_of_audio,
    cpu_description,
    load_config,
    make_models,
    measure_peak_gflops,
    median,
    music_like,
    official_state_dict,
    peak_memory_tracker,
    port_model,
    speech_like,
)

from modeling_dac import DacConfig, DacModel  # noqa: E402
from modeling_dac.metrics import mel_distance  # noqa: E402

__all__ = ["main", "run_benchmark"]

OFFICIAL_KWARGS = {
    "encoder_dim": "encoder_hidden_size",
    "encoder_rates": "downsampling_ratios",
    "latent_dim": "hidden_size",
    "decoder_dim": "decoder_hidden_size",
    "decoder_rates": "upsampling_ratios",
    "n_codebooks": "n_codebooks",
    "codebook_size": "codebook_size",
    "codebook_dim": "codebook_dim",
    "sample_rate": "sampling_rate",
}


@dataclass
class Timing:
    wall: float
    cpu: float
    peak_memory: int


@dataclass
class Row:
    """Medians of one implementation for one config, precision, duration and batch size."""

    implementation: str
    config: str
    dtype: str
    seconds: float
    batch_size: int
    encode_wall: float
    decode_wall: float
    both_wall: float
    both_cpu: float
    real_time_factor: float
    gflops: float
    fraction_of_peak: float
    peak_memory_mb: float
    speedup_encode: float | None = None
    speedup_decode: float | None = None
    speedup_both: float | None = None
    walls: list[tuple[float, float]] = field(default_factory=list)


class InProcess:
    """A model of this process (ours or the port): times `encode` on the audio, then `decode` of its latent."""

    def __init__(self, name: str, model: nn.Module, device: torch.device):
        self.name, self.model, self.device = name, model, device
        self.dtype = next(model.parameters()).dtype  # the port needs its input in its own dtype

    def load_audio(self, audio: torch.Tensor) -> None:
        self.audio = audio.to(self.device, self.dtype)

    def _timed(self, function) -> Timing:
        with peak_memory_tracker(self.device) as memory, Timer(self.device) as timer:
            function()
        return Timing(timer.wall, timer.cpu, memory.peak)

    def encode(self) -> Timing:
        def run():
            self.encoded = self.model.encode(self.audio)

        return self._timed(run)

    def decode(self) -> Timing:
        def run():
            self.decoded = self.model.decode(self.encoded.quantized_representation).audio_values

        return self._timed(run)

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        audio = self.decoded.float().cpu()
        return self.encoded.audio_codes.cpu(), audio.reshape(audio.shape[0], 1, -1)  # the port returns (batch, samples)

    def close(self) -> None:
        pass


class OfficialSubprocess:
    """The official package in its own interpreter, driven line by line (see `official_worker.py`)."""

    name = "official"

    def __init__(self, python: str, config: DacConfig, state_dict: dict, threads: int, device: torch.device):
        self.workdir = Path(tempfile.mkdtemp(prefix="dac_official_"))
        kwargs = {official: getattr(config, ours) for official, ours in OFFICIAL_KWARGS.items()}
        (self.workdir / "kwargs.json").write_text(json.dumps(kwargs))
        save_file(official_state_dict(state_dict, config), self.workdir / "weights.safetensors")
        worker = Path(__file__).resolve().parent / "official_worker.py"
        self.process = subprocess.Popen(
            [python, str(worker), "--workdir", str(self.workdir), "--threads", str(threads), "--device", str(device)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.version = hello.get("dac_version")

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the official worker exited; run it by hand to see why (see official_worker.py)")
        return json.loads(line)

    def _ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"official worker: {reply['error']}")
        return reply

    def set_dtype(self, dtype: str) -> None:
        self.dtype_name = dtype

    def load_audio(self, audio: torch.Tensor) -> None:
        path = self.workdir / "audio.safetensors"
        save_file({"audio": audio.float().contiguous()}, path)
        self._ask(op="load_audio", path=str(path), dtype=self.dtype_name)

    def encode(self) -> Timing:
        return Timing(**self._ask(op="encode"))

    def decode(self) -> Timing:
        return Timing(**self._ask(op="decode"))

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.workdir / "outputs.safetensors"
        self._ask(op="save_outputs", path=str(path))
        tensors = load_file(path)
        return tensors["audio_codes"], tensors["audio_values"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)
        for path in self.workdir.iterdir():
            path.unlink()
        self.workdir.rmdir()


def compiled_copy(model: DacModel) -> DacModel:
    """A copy of `model` whose encoder and decoder are compiled (see `DacModel.compile_for_inference`)."""
    compiled = copy.deepcopy(model)
    compiled.compile_for_inference()
    return compiled


def agreement(reference: tuple[torch.Tensor, torch.Tensor], other: tuple[torch.Tensor, torch.Tensor]) -> str:
    """How far another implementation's codes and audio are from ours."""
    codes, audio = reference
    other_codes, other_audio = other
    span = min(audio.shape[-1], other_audio.shape[-1])
    changed = (codes != other_codes).float().mean().item() if codes.shape == other_codes.shape else math.nan
    difference = (audio[..., :span] - other_audio[..., :span]).abs().max().item()
    return f"codes changed {changed:.2%}, max audio difference {difference:.1e}"


def test_audio(config: DacConfig, seconds: float, batch_size: int) -> torch.Tensor:
    """
    `(batch, 1, samples)`: speech-like and music-like clips in turn, each with its own seed, cut to whole hops
    (the Transformers port does not pad to a hop multiple, so other lengths would give it one frame less).
    """
    samples = max(int(seconds * config.sampling_rate) // config.hop_length, 1) * config.hop_length
    clips = [
        (speech_like if index % 2 == 0 else music_like)(seconds + 1 / config.frame_rate, config.sampling_rate, index)
        for index in range(batch_size)
    ]
    return torch.stack([torch.from_numpy(clip[:samples]) for clip in clips])[:, None, :]


def measure(implementations, audio: torch.Tensor, repetitions: int) -> dict[str, list[tuple[Timing, Timing]]]:
    """Alternating runs: every repetition runs each implementation once (encode then decode) in turn."""
    for implementation in implementations:
        implementation.load_audio(audio)
    timings = {implementation.name: [] for implementation in implementations}
    for _ in range(repetitions):
        for implementation in implementations:
            timings[implementation.name].append((implementation.encode(), implementation.decode()))
    return timings


def summarize(timings, setting: dict, gflop: dict[str, float], peak_gflops: float, baseline: str) -> list[Row]:
    audio_seconds = setting["seconds"] * setting["batch_size"]
    flop = (gflop["encode"] + gflop["decode"]) * audio_seconds
    rows = []
    for name, runs in timings.items():
        encode = median([run[0].wall for run in runs])
        decode = median([run[1].wall for run in runs])
        both = median([run[0].wall + run[1].wall for run in runs])
        row = Row(
            implementation=name,
            encode_wall=encode,
            decode_wall=decode,
            both_wall=both,
            both_cpu=median([run[0].cpu + run[1].cpu for run in runs]),
            real_time_factor=both / audio_seconds,
            gflops=flop / both,
            fraction_of_peak=flop / both / peak_gflops,
            peak_memory_mb=max(max(run[0].peak_memory, run[1].peak_memory) for run in runs) / 2**20,
            walls=[(run[0].wall, run[1].wall) for run in runs],
            **setting,
        )
        if baseline in timings and name != baseline:
            reference = timings[baseline]
            row.speedup_encode = median([ref[0].wall / run[0].wall for ref, run in zip(reference, runs)])
            row.speedup_decode = median([ref[1].wall / run[1].wall for ref, run in zip(reference, runs)])
            row.speedup_both = median(
                [(ref[0].wall + ref[1].wall) / (run[0].wall + run[1].wall) for ref, run in zip(reference, runs)]
            )
        rows.append(row)
    return rows


def print_rows(rows: list[Row], title: str) -> None:
    print(f"\n### {title}")
    print(
        "| implementation | encode s | decode s | both s | RTF | x transformers (enc / dec / both) "
        "| both CPU s | GFLOP/s | of peak | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        speedup = (
            f"{row.speedup_encode:.2f} / {row.speedup_decode:.2f} / **{row.speedup_both:.2f}**"
            if row.speedup_both is not None
            else "1 (baseline)" if row.implementation == "transformers" else "n/a"
        )
        print(
            f"| {row.implementation} | {row.encode_wall:.2f} | {row.decode_wall:.2f} | {row.both_wall:.2f} "
            f"| {row.real_time_factor:.3f} | {speedup} | {row.both_cpu:.2f} | {row.gflops:.1f} "
            f"| {row.fraction_of_peak:.1%} | {row.peak_memory_mb:.0f} |"
        )
    sys.stdout.flush()


def quality_report(model: DacModel, variants: dict[str, DacModel], config: DacConfig, seconds: float) -> list[dict]:
    """Codes changed and mel distance to the fp32 reconstruction, per variant, on speech- and music-like audio."""
    results = []
    for signal_name, signal in (("speech-like", speech_like), ("music-like", music_like)):
        audio = torch.from_numpy(signal(seconds, config.sampling_rate, seed=7))[None, None]
        with torch.inference_mode():
            reference = model.encode(audio)
            reference_audio = model.decode(reference.quantized_representation).audio_values[0, 0, : audio.shape[-1]]
        baseline_mel = mel_distance(audio[0, 0].numpy(), reference_audio.numpy(), config.sampling_rate)
        for name, variant in variants.items():
            variant_dtype = next(variant.parameters()).dtype
            with torch.inference_mode():
                encoded = variant.encode(audio.to(variant_dtype))
                decoded = variant.decode(encoded.quantized_representation).audio_values
            decoded = decoded.float()[0, 0, : audio.shape[-1]]
            changed = (encoded.audio_codes != reference.audio_codes).float()
            results.append(
                {
                    "signal": signal_name,
                    "variant": name,
                    "codes_changed": changed.mean().item(),
                    "first_codebook_changed": changed[:, 0].mean().item(),
                    "mel_distance_to_fp32": mel_distance(
                        reference_audio.numpy(), decoded.numpy(), config.sampling_rate
                    ),
                    "mel_distance_fp32_to_original": baseline_mel,
                    "max_audio_difference": (decoded - reference_audio).abs().max().item(),
                }
            )
    return results


def run_benchmark(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes = args.dtypes.split(",")
    peaks = {name: measure_peak_gflops(DTYPES[name], device=device) for name in dtypes}
    report = {
        "machine": cpu_description() if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": args.threads,
        "device": str(device),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(sys.argv),
        "peak_gflops": peaks,
        "rows": [],
        "quality": [],
        "notes": [],
    }
    print(f"# {report['machine']}; {args.threads} threads; torch {torch.__version__}; {report['date']}")
    print("# measured matmul peak: " + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items()))

    for config_name in args.configs.split(","):
        if args.checkpoint:
            ours = DacModel.from_pretrained(args.checkpoint).eval()
            config = ours.config
            port = port_model(config, ours.state_dict())
        else:
            config = load_config(config_name)
            ours, port = make_models(config, seed=args.seed)
        ours.to(device)
        port.to(device)
        gflop = count_gflop_per_second_of_audio(config)
        print(
            f"\n## {config_name}: {gflop['encode']:.1f} GFLOP to encode and {gflop['decode']:.1f} GFLOP to decode "
            "one second of audio (counted from the layer shapes)"
        )
        official = None
        if args.official_python:
            try:
                official = OfficialSubprocess(args.official_python, config, ours.state_dict(), args.threads, device)
            except (OSError, RuntimeError) as error:
                report["notes"].append(f"official package skipped: {error}")
                print(f"# official package skipped: {error}")

        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            ours_variant = cast_for_inference(ours, dtype)
            implementations = [
                InProcess("ours", ours_variant, device),
                InProcess("transformers", cast_for_inference(port, dtype), device),
            ]
            if args.compile:
                start = time.perf_counter()
                compiled = InProcess("ours + compile", compiled_copy(ours_variant), device)
                compiled.load_audio(test_audio(config, args.check_seconds, 1))
                with torch.inference_mode():
                    compiled.encode(), compiled.decode()
                note = f"{config_name} {dtype_name}: compiling took {time.perf_counter() - start:.0f} s (first call)"
                report["notes"].append(note)
                print(f"# {note}")
                implementations.append(compiled)
            if official is not None:
                official.set_dtype(dtype_name)
                implementations.append(official)

            with torch.inference_mode():
                # Warm-up on a short clip, which also checks that everyone computes the same thing.
                measure(implementations, test_audio(config, args.check_seconds, 1), repetitions=1)
                reference = implementations[0].outputs()
                for implementation in implementations[1:]:
                    line = f"{config_name} {dtype_name}: {implementation.name} vs ours: " + agreement(
                        reference, implementation.outputs()
                    )
                    report["notes"].append(line)
                    print(f"# {line}")

                for seconds in [float(value) for value in args.seconds.split(",")]:
                    timings = measure(implementations, test_audio(config, seconds, 1), args.repetitions)
                    setting = dict(config=config_name, dtype=dtype_name, seconds=seconds, batch_size=1)
                    rows = summarize(timings, setting, gflop, peaks[dtype_name], baseline="transformers")
                    report["rows"] += [asdict(row) for row in rows]
                    print_rows(rows, f"{config_name}, {dtype_name}, {seconds:g} s of audio, batch 1")

                for batch_size in [int(value) for value in args.batch_sizes.split(",") if value]:
                    timings = measure(
                        implementations, test_audio(config, args.batch_seconds, batch_size), args.repetitions
                    )
                    setting = dict(config=config_name, dtype=dtype_name, seconds=args.batch_seconds, batch_size=batch_size)
                    rows = summarize(timings, setting, gflop, peaks[dtype_name], baseline="transformers")
                    report["rows"] += [asdict(row) for row in rows]
                    print_rows(rows, f"{config_name}, {dtype_name}, batch {batch_size} x {args.batch_seconds:g} s")
                    for row in rows:
                        print(f"#   {row.implementation}: {1 / row.real_time_factor:.2f} s of audio per second")

        if args.quality:
            variants = {name: cast_for_inference(ours, DTYPES[name]) for name in dtypes if name != "fp32"}
            if args.compile:
                variants["fp32 + compile"] = compiled_copy(ours)
            quality = quality_report(ours, variants, config, args.quality_seconds)
            for entry in quality:
                entry["config"] = config_name
            report["quality"] += quality
            print(f"\n### {config_name}: cost of lower precision / compilation against fp32 eager")
            print("| signal | variant | codes changed | first codebook changed | mel distance to fp32 output "
                  "| (fp32 output to original) | max abs difference |")
            print("|---|---|---|---|---|---|---|")
            for entry in quality:
                print(
                    f"| {entry['signal']} | {entry['variant']} | {entry['codes_changed']:.2%} "
                    f"| {entry['first_codebook_changed']:.2%} | {entry['mel_distance_to_fp32']:.4f} "
                    f"| {entry['mel_distance_fp32_to_original']:.3f} | {entry['max_audio_difference']:.2e} |"
                )
        if official is not None:
            official.close()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="44khz,24khz", help="comma-separated: 44khz, 24khz, 16khz, tiny, ...")
    parser.add_argument("--checkpoint", help="a save_pretrained directory with real weights (instead of random)")
    parser.add_argument("--seconds", default="10", help="comma-separated audio durations, batch 1")
    parser.add_argument("--batch-sizes", default="4", help="comma-separated batch sizes for throughput ('' for none)")
    parser.add_argument("--batch-seconds", type=float, default=1.0, help="clip duration in the batched runs")
    parser.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, bf16")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time our model after compile_for_inference()")
    parser.add_argument("--quality", action="store_true", help="measure codes changed and mel distance vs fp32")
    parser.add_argument("--quality-seconds", type=float, default=5.0)
    parser.add_argument("--check-seconds", type=float, default=1.0, help="warm-up and agreement clip duration")
    parser.add_argument("--official-python", help="interpreter with descript-audio-codec 1.0.0 installed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="tiny config, short audio, one repetition (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.seconds, args.batch_sizes, args.batch_seconds = "tiny", "0.5", "2", 0.25
        args.repetitions, args.quality_seconds, args.check_seconds = 1, 0.5, 0.25
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = run_benchmark(args)
    if args.output:
        temporary = args.output.with_suffix(args.output.suffix + ".tmp")
        temporary.write_text(json.dumps(report, indent=2) + "\n")
        temporary.replace(args.output)
    return report


if __name__ == "__main__":
    main()
