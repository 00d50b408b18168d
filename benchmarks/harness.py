"""Shared pieces of the inference benchmarks: models with identical weights, FLOP counts, peak FLOP/s, test audio.

`bench_inference.py` (side-by-side timings) and `profile_inference.py` (where the time goes) both import this
module; it is not part of the installed package.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modeling_dac import DacConfig, DacModel
from modeling_dac.conversion import official_module_names

__all__ = [
    "CONFIG_DIRS",
    "DTYPES",
    "Peak",
    "Timer",
    "cast_for_inference",
    "conv_flops",
    "count_gflop_per_second_of_audio",
    "convolution_precision_matmuls",
    "cpu_description",
    "gpu_description",
    "load_config",
    "make_models",
    "measure_peak_gflops",
    "median",
    "music_like",
    "official_state_dict",
    "peak_memory_tracker",
    "perturb_weights",
    "port_model",
    "speech_like",
    "synchronize",
]

REPOSITORY = Path(__file__).resolve().parent.parent
CONFIG_DIRS = {
    "44khz": REPOSITORY / "hub_configs" / "dac_44khz",
    "44khz_16kbps": REPOSITORY / "hub_configs" / "dac_44khz_16kbps",
    "24khz": REPOSITORY / "hub_configs" / "dac_24khz",
    "16khz": REPOSITORY / "hub_configs" / "dac_16khz",
    "tiny": REPOSITORY / "hub_configs" / "tiny",
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def load_config(name: str) -> DacConfig:
    """A released configuration by short name (`44khz`, `24khz`, ...) or a directory holding a config.json."""
    path = CONFIG_DIRS.get(name, Path(name))
    if not (path / "config.json").is_file():
        raise ValueError(f"Unknown config {name!r}: use one of {sorted(CONFIG_DIRS)} or a directory with config.json.")
    return DacConfig.from_pretrained(path)


def perturb_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random Snake alphas in [0.5, 2] and small random biases, so no parameter sits at its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 1.5 + 0.5)
            elif name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.01)
    return model


def port_model(config: DacConfig, state_dict: dict[str, torch.Tensor]):
    """`transformers.DacModel` with our weights (the two share the state-dict layout), in eval mode."""
    import transformers

    fields = (
        "encoder_hidden_size", "downsampling_ratios", "decoder_hidden_size", "upsampling_ratios", "n_codebooks",
        "codebook_size", "codebook_dim", "sampling_rate", "hop_length",
    )  # fmt: skip
    if config.hidden_size != config.encoder_hidden_size * 2 ** len(config.downsampling_ratios):
        raise ValueError("transformers.DacModel cannot express a latent size other than the encoder's final width.")
    port = transformers.DacModel(transformers.DacConfig(**{name: getattr(config, name) for name in fields}))
    port.load_state_dict(state_dict, strict=True)
    return port.eval()


def make_models(config: DacConfig, seed: int = 0, with_port: bool = True) -> tuple[DacModel, nn.Module | None]:
    """Our model with seeded random weights, and `transformers.DacModel` holding the very same weights."""
    torch.manual_seed(seed)
    ours = perturb_weights(DacModel(config), seed).eval()
    return ours, port_model(config, ours.state_dict()) if with_port else None


def cast_for_inference(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """
    `model` itself for fp32, else a copy in `dtype`. Our `DacModel` keeps its quantizer in fp32, exactly as
    `DacModel.from_pretrained(..., dtype=torch.bfloat16)` does; the Transformers port is cast whole, which is
    what its users can do.
    """
    if dtype == torch.float32:
        return model
    model = copy.deepcopy(model).to(dtype)
    if isinstance(model, DacModel):
        model.quantizer.float()
    return model


def conv_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-adds times two of one Conv1d / ConvTranspose1d call, from its input and output shapes."""
    weight_elements = module.weight.shape[0] * module.weight.shape[1] * module.weight.shape[2]
    if isinstance(module, nn.ConvTranspose1d):
        positions = inputs[0].shape[0] * inputs[0].shape[-1]  # every input sample meets the whole kernel
    else:
        positions = output.shape[0] * output.shape[-1]
    return 2 * weight_elements * positions


def count_gflop_per_second_of_audio(config: DacConfig) -> dict[str, float]:
    """
    GFLOP to encode and to decode one second of audio, counted layer by layer by running the encoder and decoder
    on the meta device (no memory, no arithmetic). The quantizer's 1x1 projections and codebook search are
    counted analytically: they cost well under 0.1% of the total.
    """
    with torch.device("meta"):
        model = DacModel(config)
    totals = {"encode": 0, "decode": 0}
    current = {"part": "encode"}

    def hook(module, inputs, output):
        totals[current["part"]] += conv_flops(module, inputs, output)

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d))
    ]
    frames = config.frame_rate
    samples = math.ceil(frames) * config.hop_length  # whole frames; scaled back to one second below
    with torch.no_grad():
        model.encoder(torch.empty(1, 1, samples, device="meta"))
        current["part"] = "decode"
        model.decoder(torch.empty(1, config.hidden_size, samples // config.hop_length, device="meta"))
    for handle in handles:
        handle.remove()
    scale = config.sampling_rate / samples
    per_codebook = 2 * config.hidden_size * config.codebook_dim * 2 + 2 * config.codebook_dim * config.codebook_size
    quantizer = config.n_codebooks * per_codebook * frames
    return {
        "encode": (totals["encode"] * scale + quantizer) / 1e9,
        "decode": (totals["decode"] * scale) / 1e9,
    }


@dataclass
class Peak:
    """Best matmul rates: GFLOP per wall-clock second, and per CPU second of the process (all threads)."""

    wall: float
    cpu: float


@contextlib.contextmanager
def convolution_precision_matmuls(device: torch.device):
    """
    On a GPU, fp32 matmuls in the precision that cuDNN gives fp32 convolutions: by default TF32 for convolutions
    (`torch.backends.cudnn.conv.fp32_precision`) but IEEE fp32 for matmuls, so a peak measured with IEEE fp32
    matmuls would be several times too low for the convolutions that make up DAC.
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved, matmul.fp32_precision = matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        yield
    finally:
        matmul.fp32_precision = saved


def measure_peak_gflops(
    dtype: torch.dtype, device: torch.device | str = "cpu", size: int | None = None, repetitions: int = 15
) -> Peak:
    """
    The machine's practical peak at the current thread count: the best of `repetitions` square matmuls. On a
    shared machine the wall-clock rate depends on the moment; the CPU-time rate (FLOP per CPU second used)
    hardly does, which is why both are kept.
    """
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    left = torch.randn(size, size, device=device).to(dtype)
    right = torch.randn(size, size, device=device).to(dtype)
    with convolution_precision_matmuls(device):
        torch.mm(left, right)
        best_wall = best_cpu = math.inf
        for _ in range(repetitions):
            with Timer(device) as timer:
                torch.mm(left, right)
            best_wall, best_cpu = min(best_wall, timer.wall), min(best_cpu, timer.cpu)
    flop = 2 * size**3
    return Peak(wall=flop / best_wall / 1e9, cpu=flop / best_cpu / 1e9 if best_cpu > 0 else math.nan)


def cpu_description() -> str:
    """CPU model, core count and the ISA flags that matter for fp32/bf16 convolutions."""
    name, flags = platform.processor() or "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and name in ("unknown CPU", platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    present = [flag for flag in wanted if flag in flags]
    huge_pages = "on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off"
    return (
        f"{name}, {os.cpu_count()} logical CPUs, flags: {' '.join(present) or 'none of ' + ' '.join(wanted)}; "
        f"huge pages for tensors (THP_MEM_ALLOC_ENABLE) {huge_pages}"
    )


def gpu_description(device: torch.device) -> str:
    """GPU name and the precision its fp32 convolutions run in (TF32 unless turned off)."""
    precision = torch.backends.cudnn.conv.fp32_precision
    return f"{torch.cuda.get_device_name(device)}; fp32 convolutions in {precision} (torch.backends.cudnn.conv)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that a timer around it measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """
    Wall-clock and process CPU time of a block, synchronising the GPU at both ends when `device` is one:
    `with Timer(device) as t: ...`, then `t.wall`, `t.cpu` (seconds).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info) -> None:
        synchronize(self.device)
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _resident_bytes(field: str) -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class peak_memory_tracker:
    """
    Peak memory a block adds, in bytes, as `.peak` after it: on a GPU the allocator's peak above what was
    allocated before; on Linux CPUs the peak resident set (reset through /proc/self/clear_refs) above the
    resident set before; 0 where neither is available.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak = 0

    def __enter__(self) -> "peak_memory_tracker":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self._base = _resident_bytes("VmRSS")
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self.peak = max(_resident_bytes("VmHWM") - self._base, 0)


def official_state_dict(state_dict: dict[str, torch.Tensor], config: DacConfig) -> dict[str, torch.Tensor]:
    """Our (folded) state dict under the official module names, with plain `weight`s (no weight norm)."""
    names = {ours: official for official, ours in official_module_names(config).items()}
    renamed = {}
    for key, tensor in state_dict.items():
        module, _, parameter = key.rpartition(".")
        renamed[f"{names[module]}.{parameter}"] = tensor.contiguous()
    return renamed


def _envelope(length: int, sampling_rate: int, rate_hz: float, generator: np.random.Generator) -> np.ndarray:
    time_axis = np.arange(length) / sampling_rate
    phase = generator.uniform(0, 2 * np.pi)
    return np.clip(np.sin(2 * np.pi * rate_hz * time_axis + phase), 0, None) ** 2


def speech_like(seconds: float, sampling_rate: int, seed: int = 0) -> np.ndarray:
    """
    A synthetic voice: a gliding glottal pulse train (110-220 Hz) through three moving formant resonances,
    syllable-rate (4 Hz) amplitude envelope, plus breath noise. Float32 in [-1, 1], peak 0.5.
    """
    generator = np.random.default_rng(seed)
    length = int(seconds * sampling_rate)
    time_axis = np.arange(length) / sampling_rate
    pitch = 165 + 55 * np.sin(2 * np.pi * 0.7 * time_axis)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    source = np.zeros(length)
    for harmonic in range(1, 40):
        if harmonic * pitch.max() >= sampling_rate / 2:
            break
        source += np.cos(harmonic * phase) / harmonic
    signal = np.zeros(length)
    for center, bandwidth, wobble in ((700, 130, 0.9), (1200, 200, 1.3), (2600, 300, 0.5)):
        formant = center * (1 + 0.25 * np.sin(2 * np.pi * wobble * time_axis))
        signal += np.cos(phase * (formant / pitch)) * source * np.exp(-bandwidth / 2000)
    signal = signal * _envelope(length, sampling_rate, 4.0, generator)
    signal += 0.02 * generator.standard_normal(length)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def music_like(seconds: float, sampling_rate: int, seed: int = 0) -> np.ndarray:
    """
    A synthetic band: plucked notes of a pentatonic melody (decaying harmonics), a bass line, and noise-burst
    percussion at 120 bpm. Float32 in [-1, 1], peak 0.5.
    """
    generator = np.random.default_rng(seed)
    length = int(seconds * sampling_rate)
    signal = np.zeros(length)
    beat = int(0.5 * sampling_rate)
    scale = [261.6, 293.7, 329.6, 392.0, 440.0, 523.3]
    for start in range(0, length, beat // 2):
        note = np.arange(min(beat, length - start)) / sampling_rate
        frequency = scale[generator.integers(len(scale))]
        tone = sum(np.sin(2 * np.pi * frequency * k * note) * 0.6**k for k in range(1, 8))
        signal[start : start + note.size] += tone * np.exp(-note * 6)
    for start in range(0, length, beat * 2):
        note = np.arange(min(2 * beat, length - start)) / sampling_rate
        signal[start : start + note.size] += 0.8 * np.sin(2 * np.pi * scale[0] / 4 * note) * np.exp(-note * 2)
    for start in range(0, length, beat):
        hit = np.arange(min(beat // 4, length - start)) / sampling_rate
        signal[start : start + hit.size] += 0.5 * generator.standard_normal(hit.size) * np.exp(-hit * 40)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)
