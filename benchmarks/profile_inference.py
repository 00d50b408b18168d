"""Where inference time goes, per layer type: dilated convolutions, 1x1 convolutions, strided and transposed
convolutions, Snake activations, the quantizer, and everything else (padding, residual adds, tanh, checks).

Forward hooks time every leaf layer (wall clock and process CPU time) and count its FLOPs from the shapes it
saw, so each row shows the achieved GFLOP/s and the fraction of the machine's measured matmul peak. Inside our
model's time tiles (docs/fast_inference.md) the convolutions are function calls rather than modules; the
profile wraps the function that runs them (`_channels_last_conv`) with the same timers,
so the table is of the path that really runs. `--untiled` profiles our model with tiles off instead. Runs on
our `DacModel` or on `transformers.DacModel` with the same weights, in fp32 or bf16 (weights cast to bf16; our
quantizer stays in fp32).

    python benchmarks/profile_inference.py --config 44khz --seconds 2 --threads 2
    python benchmarks/profile_inference.py --model transformers --part encode
    python benchmarks/profile_inference.py --ops        # also torch.profiler's per-operator table
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from modeling_dac import modeling_dac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    DTYPES,
    cast_for_inference,
    conv_flops,
    cpu_description,
    load_config,
    make_models,
    measure_peak_gflops,
    speech_like,
)

__all__ = ["layer_kind", "profile_layers"]

KINDS = (
    "conv k=7 (dilated)",
    "conv 1x1",
    "strided conv (down)",
    "transposed conv (up)",
    "other conv (in/out)",
    "snake",
    "quantizer",
)


def layer_kind(name: str, module: nn.Module) -> str | None:
    """The row of the profile a module's time goes to, or None for containers timed through their children."""
    if name == "quantizer":
        return "quantizer"
    if name.startswith("quantizer."):
        return None
    if "Snake" in type(module).__name__:
        return "snake"
    if isinstance(module, nn.ConvTranspose1d):
        return "transposed conv (up)"
    if isinstance(module, nn.Conv1d):
        if module.stride[0] > 1:
            return "strided conv (down)"
        if ".res_unit" not in name:
            return "other conv (in/out)"
        return "conv 1x1" if module.kernel_size[0] == 1 else "conv k=7 (dilated)"
    return None


def channels_last_conv_kind(weight: torch.Tensor, stride: int, transposed: bool) -> str:
    """The row of a time tile's channels-last convolution, from its weight `(out, in, 1, kernel)`, stride and kind."""
    out_channels, in_channels, _, kernel_size = weight.shape
    if transposed:
        return "transposed conv (up)"
    if stride > 1:
        return "strided conv (down)"
    if out_channels != in_channels:
        return "other conv (in/out)"
    return "conv 1x1" if kernel_size == 1 else "conv k=7 (dilated)"


def profile_layers(model: nn.Module, run) -> tuple[dict[str, dict[str, float]], float, float]:
    """
    Runs `run()` once with timing hooks on every profiled layer, and timers on the convolutions of our time
    tiles. Returns, per kind, wall seconds, CPU seconds and GFLOP, plus the total wall and CPU seconds of the run
    (the difference is the "other" row).
    """
    rows = defaultdict(lambda: {"wall": 0.0, "cpu": 0.0, "gflop": 0.0})
    starts = {}

    def add(kind: str, wall: float, cpu: float, flops: float) -> None:
        row = rows[kind]
        row["wall"] += time.perf_counter() - wall
        row["cpu"] += time.process_time() - cpu
        row["gflop"] += flops / 1e9

    def before(module, inputs):
        starts[module] = (time.perf_counter(), time.process_time())

    def after(module, inputs, output):
        flops = conv_flops(module, inputs, output) if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) else 0
        add(module._profile_kind, *starts.pop(module), flops)

    channels_last_conv = modeling_dac._channels_last_conv

    def timed_channels_last_conv(hidden_states, weight, bias, dilation=1, stride=1, padding=0, transposed=False):
        wall, cpu = time.perf_counter(), time.process_time()
        output = channels_last_conv(hidden_states, weight, bias, dilation, stride, padding, transposed)
        # A transposed convolution meets every input frame with the whole kernel, a convolution every output frame.
        batch_size, frames, _ = hidden_states.shape if transposed else output.shape
        kind = channels_last_conv_kind(weight, stride, transposed)
        add(kind, wall, cpu, 2 * weight.numel() * batch_size * frames)
        return output

    handles = []
    for name, module in model.named_modules():
        kind = layer_kind(name, module)
        if kind is not None:
            module._profile_kind = kind
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    modeling_dac._channels_last_conv = timed_channels_last_conv
    try:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run()
        total_wall, total_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    finally:
        modeling_dac._channels_last_conv = channels_last_conv
        for handle in handles:
            handle.remove()
    return dict(rows), total_wall, total_cpu


@contextlib.contextmanager
def untiled():
    """Our model without time tiles (`--untiled`)."""
    kept = modeling_dac.TIME_TILE_FRAMES
    modeling_dac.TIME_TILE_FRAMES = sys.maxsize
    try:
        yield
    finally:
        modeling_dac.TIME_TILE_FRAMES = kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="44khz", help="44khz, 24khz, 16khz, 44khz_16kbps, tiny, or a directory")
    parser.add_argument("--model", choices=("ours", "transformers"), default="ours")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio duration")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--part", choices=("encode", "decode", "both"), default="both")
    parser.add_argument("--untiled", action="store_true", help="our model with time tiles off")
    parser.add_argument("--ops", action="store_true", help="also print torch.profiler's per-operator table")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    ours, port = make_models(config, with_port=args.model == "transformers")
    model = cast_for_inference(ours if args.model == "ours" else port, DTYPES[args.dtype])
    dtype = next(model.parameters()).dtype
    audio = torch.from_numpy(speech_like(args.seconds, config.sampling_rate)).to(dtype)
    audio = audio.expand(args.batch_size, 1, -1)

    with torch.inference_mode():
        latent = model.encode(audio).quantized_representation

        def run():
            if args.part in ("encode", "both"):
                model.encode(audio)
            if args.part in ("decode", "both"):
                model.decode(latent)

        with untiled() if args.untiled else contextlib.nullcontext():
            run()  # warm-up: one-time allocations and kernel selection
            rows, total_wall, total_cpu = profile_layers(model, run)
            plain_start = time.perf_counter()
            run()
            plain_wall = time.perf_counter() - plain_start
            if args.ops:
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
                    run()

    peak = measure_peak_gflops(DTYPES[args.dtype])
    audio_seconds = args.seconds * args.batch_size
    print(f"# {args.model} DacModel, {args.config}, {args.part}, {audio_seconds:g} s of audio (batch {args.batch_size})")
    print(f"# {args.dtype}, {args.threads} threads, torch {torch.__version__}; {cpu_description()}")
    print(f"# measured matmul peak ({args.dtype}): {peak.wall:.0f} GFLOP/s wall clock, {peak.cpu:.0f} per CPU second")
    print(
        f"{'layer type':24} {'wall s':>8} {'share':>6} {'cpu s':>8} {'GFLOP':>8} {'GFLOP/s':>8} "
        f"{'of peak':>8} {'of peak (cpu)':>13}"
    )
    def rates(row: dict[str, float]) -> str:
        if not row["gflop"]:
            return ""
        rate = row["gflop"] / row["wall"]
        cpu_fraction = row["gflop"] / row["cpu"] / peak.cpu if row["cpu"] > 0 else math.nan
        return f"{row['gflop']:8.1f} {rate:8.1f} {rate / peak.wall:8.1%} {cpu_fraction:13.1%}"

    accounted_wall = accounted_cpu = total_gflop = 0.0
    for kind in KINDS:
        row = rows.get(kind)
        if row is None:
            continue
        accounted_wall += row["wall"]
        accounted_cpu += row["cpu"]
        total_gflop += row["gflop"]
        print(f"{kind:24} {row['wall']:8.3f} {row['wall'] / total_wall:6.1%} {row['cpu']:8.3f} " + rates(row))
    other_wall, other_cpu = total_wall - accounted_wall, total_cpu - accounted_cpu
    print(f"{'other (adds, pads, ...)':24} {other_wall:8.3f} {other_wall / total_wall:6.1%} {other_cpu:8.3f}")
    total = {"wall": total_wall, "cpu": total_cpu, "gflop": total_gflop}
    print(f"{'total':24} {total_wall:8.3f} {1:6.1%} {total_cpu:8.3f} " + rates(total))
    print(f"# real-time factor (processing seconds per audio second): {total_wall / audio_seconds:.3f}")
    tiles = "tiles off" if args.untiled else "time tiles on (the default)" if args.model == "ours" else "the port"
    print(
        f"# {tiles}; the same run without the profile's timers: {plain_wall:.3f} s wall, "
        f"{total_gflop / plain_wall / peak.wall:.1%} of peak"
    )
    if args.ops:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
