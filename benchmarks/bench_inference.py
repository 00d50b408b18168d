"""Side-by-side inference benchmark: our `DacModel`, `transformers.DacModel` and the official package.

All implementations hold the very same weights (random by default, or `--checkpoint DIR`) and process the very
same audio; their runs alternate inside one loop (ours, transformers, official, ours, ...), so that load on a
shared machine hits them alike. Each cell is the median over `--repetitions`; the "x transformers" columns are
medians of the per-repetition ratios (paired, so slow drift of the machine cancels out).

Reported per config, precision and duration: encode alone (tokenization), decode alone, both; the real-time
factor (processing seconds per audio second); wall and CPU seconds; achieved GFLOP/s and the fraction of the
matmul peak measured at the start at the same thread count, by wall clock and by CPU time (FLOP per CPU second:
robust to other processes on a shared machine); peak memory of the call. Then batch throughput
(seconds of audio per second, encode alone and encode plus decode) at several batch sizes and clip durations. `--quality` measures what bf16 (and `--compile`) cost:
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
    gpu_description,
    load_config,
    make_models,
    Peak,
    measure_peak_gflops,
    median,
    music_like,
    official_state_dict,
    peak_memory_tracker,
    port_model,
    speech_like,
)

from modeling_dac import DacConfig, DacModel  # noqa: E402
from modeling_dac.audio import load_audio, resample  # noqa: E402
from modeling_dac.metrics import mel_distance  # noqa: E402

__all__ = ["main", "run_benchmark"]

EXAMPLE_AUDIO = Path(__file__).resolve().parent.parent / "examples" / "audio" / "speech_and_music.flac"
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
    fraction_of_peak_wall: float
    fraction_of_peak_cpu: float
    encode_throughput: float
    encode_fraction_of_peak_wall: float
    encode_fraction_of_peak_cpu: float
    peak_memory_mb: float
    speedup_encode: float | None = None
    speedup_decode: float | None = None
    speedup_both: float | None = None
    speedup_both_range: tuple[float, float] | None = None
    speedup_both_cpu: float | None = None
    speedup_both_vs_fp32_port: float | None = None
    walls: list[tuple[float, float]] = field(default_factory=list)


class InProcess:
    """A model of this process (ours or the port): times `encode` on the audio, then `decode` of its latent."""

    def __init__(self, name: str, precision: str, model: nn.Module, device: torch.device):
        self.name, self.precision, self.model, self.device = name, precision, model, device
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

    def __init__(
        self, python: str, precision: str, config: DacConfig, state_dict: dict, threads: int, device: torch.device
    ):
        self.precision = precision
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

    def load_audio(self, audio: torch.Tensor) -> None:
        path = self.workdir / "audio.safetensors"
        save_file({"audio": audio.float().contiguous()}, path)
        self._ask(op="load_audio", path=str(path), dtype=self.precision)

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
    """
    Alternating runs. Each repetition encodes with every implementation in turn, then decodes with every one in
    turn, so that the runs being compared follow each other within seconds; the order rotates by one place per
    repetition, so that no implementation always follows the same neighbour. One untimed encode and decode of
    each comes first: kernel choices and oneDNN primitives are cached per shape, in a cache that everything in
    the process shares, so without it the first implementation to meet a shape would pay for all.
    """
    for implementation in implementations:
        implementation.load_audio(audio)
        implementation.encode(), implementation.decode()
    timings = {(implementation.name, implementation.precision): [] for implementation in implementations}
    for repetition in range(repetitions):
        shift = repetition % len(implementations)
        order = implementations[shift:] + implementations[:shift]
        encoded = {id(implementation): implementation.encode() for implementation in order}
        decoded = {id(implementation): implementation.decode() for implementation in order}
        for implementation in implementations:
            key = (implementation.name, implementation.precision)
            timings[key].append((encoded[id(implementation)], decoded[id(implementation)]))
    return timings


def paired_speedup(reference: list, runs: list, part) -> float:
    """Median over repetitions of reference time / run time, `part` picking the seconds out of a run."""
    return median([part(ref) / part(run) for ref, run in zip(reference, runs)])


def summarize(timings, setting: dict, gflop: dict[str, float], peaks: dict[str, Peak]) -> list[Row]:
    """One row per implementation and precision; ratios against transformers.DacModel, paired by repetition."""
    audio_seconds = setting["seconds"] * setting["batch_size"]
    flop = (gflop["encode"] + gflop["decode"]) * audio_seconds
    encode_flop = gflop["encode"] * audio_seconds
    rows = []
    for (name, precision), runs in timings.items():
        both = median([run[0].wall + run[1].wall for run in runs])
        both_cpu = median([run[0].cpu + run[1].cpu for run in runs])
        encode, encode_cpu = median([run[0].wall for run in runs]), median([run[0].cpu for run in runs])
        peak = peaks[precision]
        row = Row(
            implementation=name,
            dtype=precision,
            encode_wall=encode,
            decode_wall=median([run[1].wall for run in runs]),
            both_wall=both,
            both_cpu=both_cpu,
            real_time_factor=both / audio_seconds,
            gflops=flop / both,
            fraction_of_peak_wall=flop / both / peak.wall,
            fraction_of_peak_cpu=flop / both_cpu / peak.cpu if both_cpu > 0 else math.nan,
            encode_throughput=audio_seconds / encode,
            encode_fraction_of_peak_wall=encode_flop / encode / peak.wall,
            encode_fraction_of_peak_cpu=encode_flop / encode_cpu / peak.cpu if encode_cpu > 0 else math.nan,
            peak_memory_mb=max(max(run[0].peak_memory, run[1].peak_memory) for run in runs) / 2**20,
            walls=[(run[0].wall, run[1].wall) for run in runs],
            **setting,
        )
        same_precision = timings.get(("transformers", precision))
        if same_precision is not None and name != "transformers":
            row.speedup_encode = paired_speedup(same_precision, runs, lambda run: run[0].wall)
            row.speedup_decode = paired_speedup(same_precision, runs, lambda run: run[1].wall)
            row.speedup_both = paired_speedup(same_precision, runs, lambda run: run[0].wall + run[1].wall)
            ratios = [(ref[0].wall + ref[1].wall) / (run[0].wall + run[1].wall) for ref, run in zip(same_precision, runs)]
            row.speedup_both_range = (min(ratios), max(ratios))
            row.speedup_both_cpu = paired_speedup(same_precision, runs, lambda run: run[0].cpu + run[1].cpu)
        fp32_port = timings.get(("transformers", "fp32"))
        if fp32_port is not None and precision != "fp32":
            row.speedup_both_vs_fp32_port = paired_speedup(fp32_port, runs, lambda run: run[0].wall + run[1].wall)
        rows.append(row)
    return rows


def print_rows(rows: list[Row], title: str, device: torch.device) -> None:
    """
    A markdown table. "of peak" is, on a CPU, FLOP per CPU second over the matmul's FLOP per CPU second (robust
    to other processes sharing the machine); on a GPU, FLOP per second over the matmul's.
    """
    print(f"\n### {title}")
    print(
        "| implementation | precision | encode s | decode s | both s | RTF | x transformers, same precision "
        "(enc / dec / both; both's range) | x transformers fp32 (both) | both CPU s | x transformers by CPU time "
        "| GFLOP/s | of peak | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.speedup_both is not None:
            low, high = row.speedup_both_range
            speedup = (
                f"{row.speedup_encode:.2f} / {row.speedup_decode:.2f} / **{row.speedup_both:.2f}** "
                f"({low:.2f}-{high:.2f})"
            )
        else:
            speedup = "1 (baseline)" if row.implementation == "transformers" else "n/a"
        versus_fp32 = "" if row.speedup_both_vs_fp32_port is None else f"{row.speedup_both_vs_fp32_port:.2f}"
        by_cpu = "" if row.speedup_both_cpu is None else f"{row.speedup_both_cpu:.2f}"
        print(
            f"| {row.implementation} | {row.dtype} | {row.encode_wall:.2f} | {row.decode_wall:.2f} "
            f"| {row.both_wall:.2f} | {row.real_time_factor:.3f} | {speedup} | {versus_fp32} | {row.both_cpu:.2f} | {by_cpu} "
            f"| {row.gflops:.1f} "
            f"| {row.fraction_of_peak_cpu if device.type == 'cpu' else row.fraction_of_peak_wall:.1%} "
            f"| {row.peak_memory_mb:.0f} |"
        )
    sys.stdout.flush()


def print_throughput(rows: list[Row], device: torch.device) -> None:
    """Seconds of audio per second: encoding alone (tokenizing a corpus), and encoding plus decoding."""
    for row in rows:
        fraction = row.encode_fraction_of_peak_cpu if device.type == "cpu" else row.encode_fraction_of_peak_wall
        versus_port = "" if row.speedup_encode is None else f" (x{row.speedup_encode:.2f} transformers)"
        print(
            f"#   {row.implementation} {row.dtype}: encode {row.encode_throughput:.2f} s of audio per second"
            f"{versus_port}, {fraction:.1%} of peak; encode and decode {1 / row.real_time_factor:.2f}"
        )


def quality_signals(config: DacConfig, seconds: float) -> dict[str, torch.Tensor]:
    """Synthetic speech- and music-like clips, and the repository's example recording when it is there."""
    signals = {
        "speech-like": speech_like(seconds, config.sampling_rate, seed=7),
        "music-like": music_like(seconds, config.sampling_rate, seed=7),
    }
    if EXAMPLE_AUDIO.is_file():
        audio, sampling_rate = load_audio(EXAMPLE_AUDIO)
        audio = resample(audio.mean(axis=0), sampling_rate, config.sampling_rate)
        signals[EXAMPLE_AUDIO.name] = audio[: int(seconds * config.sampling_rate)].astype("float32")
    return {name: torch.from_numpy(signal)[None, None] for name, signal in signals.items()}


def quality_report(model: DacModel, variants: dict[str, DacModel], config: DacConfig, seconds: float) -> list[dict]:
    """Codes changed and mel distance to the fp32 reconstruction, per variant and test signal."""
    results = []
    for signal_name, audio in quality_signals(config, seconds).items():
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
    peak_size = 512 if args.quick else None
    peaks = {name: measure_peak_gflops(DTYPES[name], device, peak_size) for name in args.dtypes.split(",")}
    report = {
        "machine": cpu_description() if device.type == "cpu" else gpu_description(device),
        "threads": args.threads,
        "device": str(device),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(sys.argv),
        "peak_gflops": {name: asdict(peak) for name, peak in peaks.items()},
        "rows": [],
        "quality": [],
        "notes": [],
    }
    print(f"# {report['machine']}; {args.threads} threads; torch {torch.__version__}; {report['date']}")
    print(
        "# measured matmul peak: "
        + ", ".join(
            f"{name} {peak.wall:.0f} GFLOP/s wall clock, {peak.cpu:.0f} GFLOP per CPU second"
            for name, peak in peaks.items()
        )
    )

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
        implementations = build_implementations(args, config, config_name, ours, port, device, report)
        try:
            with torch.inference_mode():
                for index, seconds in enumerate(float(value) for value in args.seconds.split(",") if value):
                    timings = measure(implementations, test_audio(config, seconds, 1), args.repetitions)
                    if index == 0:
                        check_agreement(implementations, config_name, report)
                    rows = summarize(timings, dict(config=config_name, seconds=seconds, batch_size=1), gflop, peaks)
                    report["rows"] += [asdict(row) for row in rows]
                    print_rows(rows, f"{config_name}, {seconds:g} s of audio, batch 1", device)
                batches = [
                    (int(size), float(seconds))
                    for seconds in args.batch_seconds.split(",")
                    if seconds
                    for size in args.batch_sizes.split(",")
                    if size
                ]
                for batch_size, batch_seconds in batches:
                    timings = measure(implementations, test_audio(config, batch_seconds, batch_size), args.repetitions)
                    if not args.seconds:
                        check_agreement(implementations, config_name, report)
                    setting = dict(config=config_name, seconds=batch_seconds, batch_size=batch_size)
                    rows = summarize(timings, setting, gflop, peaks)
                    report["rows"] += [asdict(row) for row in rows]
                    print_rows(rows, f"{config_name}, batch {batch_size} x {batch_seconds:g} s", device)
                    print_throughput(rows, device)
            if args.quality:
                variants = {
                    f"{implementation.name} {implementation.precision}": implementation.model
                    for implementation in implementations
                    if implementation.name.startswith("ours")
                    and not (implementation.name == "ours" and implementation.precision == "fp32")
                }
                quality = quality_report(ours, variants, config, args.quality_seconds)
                report["quality"] += print_quality(quality, config_name)
        finally:
            for implementation in implementations:
                implementation.close()
    return report


def build_implementations(args, config, config_name, ours, port, device, report) -> list:
    """Ours, the port, and optionally ours compiled and the official package, in each requested precision."""
    implementations = []
    for precision in args.dtypes.split(","):
        dtype = DTYPES[precision]
        ours_variant = cast_for_inference(ours, dtype)
        implementations += [
            InProcess("ours", precision, ours_variant, device),
            InProcess("transformers", precision, cast_for_inference(port, dtype), device),
        ]
        if args.compile:
            start = time.perf_counter()
            compiled = InProcess("ours + compile", precision, compiled_copy(ours_variant), device)
            compiled.load_audio(test_audio(config, args.compile_seconds, 1))
            with torch.inference_mode():
                compiled.encode(), compiled.decode()
            note = f"{config_name} {precision}: compiling took {time.perf_counter() - start:.0f} s (first call)"
            report["notes"].append(note)
            print(f"# {note}")
            implementations.append(compiled)
        if args.official_python:
            try:
                implementations.append(
                    OfficialSubprocess(
                        args.official_python, precision, config, ours.state_dict(), args.threads, device
                    )
                )
            except (OSError, RuntimeError) as error:
                report["notes"].append(f"official package skipped: {error}")
                print(f"# official package skipped: {error}")
    return implementations


def check_agreement(implementations, config_name: str, report: dict) -> None:
    """Compares the last outputs of every implementation (all on the same audio) with ours at the same precision."""
    references = {item.precision: item.outputs() for item in implementations if item.name == "ours"}
    for implementation in implementations:
        if implementation.name != "ours":
            outputs = implementation.outputs()
            line = f"{config_name} {implementation.precision}: {implementation.name} vs ours: " + agreement(
                references[implementation.precision], outputs
            )
            report["notes"].append(line)
            print(f"# {line}")


def print_quality(quality: list[dict], config_name: str) -> list[dict]:
    print(f"\n### {config_name}: what lower precision and compilation change against fp32 eager")
    print(
        "| signal | variant | codes changed | first codebook changed | mel distance to the fp32 output "
        "| (fp32 output to the original) | max abs difference |"
    )
    print("|---|---|---|---|---|---|---|")
    for entry in quality:
        entry["config"] = config_name
        print(
            f"| {entry['signal']} | {entry['variant']} | {entry['codes_changed']:.2%} "
            f"| {entry['first_codebook_changed']:.2%} | {entry['mel_distance_to_fp32']:.4f} "
            f"| {entry['mel_distance_fp32_to_original']:.3f} | {entry['max_audio_difference']:.2e} |"
        )
    return quality


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs",
        help="comma-separated: 44khz, 24khz, 16khz, tiny, ... (default 44khz,24khz; with --checkpoint, its name)",
    )
    parser.add_argument(
        "--checkpoint", help="a save_pretrained directory with real weights (instead of random configs); one label"
    )
    parser.add_argument("--seconds", default="10", help="comma-separated audio durations at batch 1 ('' for none)")
    parser.add_argument("--batch-sizes", default="", help="comma-separated batch sizes for throughput, e.g. 1,4")
    parser.add_argument(
        "--batch-seconds", default="1", help="comma-separated clip durations of the batched runs (each batch size)"
    )
    parser.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, bf16")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time our model after compile_for_inference()")
    parser.add_argument("--quality", action="store_true", help="measure codes changed and mel distance vs fp32")
    parser.add_argument("--quality-seconds", type=float, default=5.0)
    parser.add_argument("--compile-seconds", type=float, default=1.0, help="audio of the first (compiling) call")
    parser.add_argument("--official-python", help="interpreter with descript-audio-codec 1.0.0 installed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="tiny config, short audio, one repetition (smoke test)")
    args = parser.parse_args(argv)
    if args.checkpoint and args.configs and "," in args.configs:
        parser.error("--checkpoint benchmarks one model: give --configs one label for it, or none")
    if args.configs is None:
        args.configs = Path(args.checkpoint).name if args.checkpoint else "44khz,24khz"
    if args.quick:
        args.configs, args.seconds, args.batch_sizes, args.batch_seconds = "tiny", "0.5", "2", "0.25,0.5"
        args.repetitions, args.quality_seconds, args.compile_seconds = 1, 0.5, 0.25
    return args


def print_summary(report: dict) -> None:
    """One line per setting: how much faster than transformers.DacModel each implementation is (wall clock)."""
    print("\n## Summary: speed-up over transformers.DacModel (median of paired ratios; >1 is faster)")
    for row in report["rows"]:
        if row["speedup_both"] is not None:
            versus_fp32 = row["speedup_both_vs_fp32_port"]
            print(
                f"{row['implementation']:>14} {row['dtype']} | {row['config']} {row['seconds']:g} s x batch "
                f"{row['batch_size']}: encode x{row['speedup_encode']:.2f}, decode x{row['speedup_decode']:.2f}, "
                f"both x{row['speedup_both']:.2f} (by CPU time x{row['speedup_both_cpu']:.2f})"
                + ("" if versus_fp32 is None else f"; both x{versus_fp32:.2f} against transformers fp32")
            )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = run_benchmark(args)
    print_summary(report)
    if args.output:
        temporary = args.output.with_suffix(args.output.suffix + ".tmp")
        temporary.write_text(json.dumps(report, indent=2) + "\n")
        temporary.replace(args.output)
    return report


if __name__ == "__main__":
    main()
