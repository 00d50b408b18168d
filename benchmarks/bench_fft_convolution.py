"""Would FFT convolution speed up DAC's dilated 7-tap convolutions on CPU? A measured answer (a dropped lever).

Overlap-save with an `n_fft`-point real FFT computes `n_fft - 6 * dilation` outputs per block with one complex
matrix product per frequency bin, about 2.3 real multiply-adds per output and channel pair against 7 for the
direct convolution. This script times that, written with PyTorch operations, against `F.conv1d` for every
width and frame rate of the 44.1 kHz model's residual units (10 s of audio), and reports the error relative to
the largest output. docs/benchmarks.md has the figures and why the lever was dropped.

    python benchmarks/bench_fft_convolution.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

__all__ = ["fft_convolution", "main"]

KERNEL_SIZE = 7
# (channels, frames in 10 s) of the 44.1 kHz model's residual units: encoder blocks, then decoder blocks.
LAYERS = [(64, 441000), (128, 220500), (256, 55125), (512, 6890), (768, 6890), (384, 55125), (192, 220500), (96, 441000)]


def kernel_spectrum(weight: torch.Tensor, dilation: int, n_fft: int) -> torch.Tensor:
    """Conjugate spectrum of the dilated kernel, `(out, in, 7) -> (n_fft // 2 + 1, out, in)` (correlation, not convolution)."""
    out_channels, in_channels, kernel_size = weight.shape
    dilated = weight.new_zeros(out_channels, in_channels, n_fft)
    dilated[..., : (kernel_size - 1) * dilation + 1 : dilation] = weight
    return torch.fft.rfft(dilated).conj().permute(2, 0, 1).contiguous()


def fft_convolution(hidden_states, spectrum, bias, dilation: int, n_fft: int) -> torch.Tensor:
    """`F.conv1d(hidden_states, weight, bias, padding=3 * dilation, dilation=dilation)` by overlap-save."""
    batch_size, in_channels, length = hidden_states.shape
    span = (KERNEL_SIZE - 1) * dilation
    valid = n_fft - span
    n_blocks = -(-length // valid)
    padded = F.pad(hidden_states, (span // 2, n_blocks * valid + span - length - span // 2))
    blocks = torch.fft.rfft(padded.unfold(-1, n_fft, valid))  # (batch, in, blocks, bins)
    n_bins = blocks.shape[-1]
    products = spectrum @ blocks.permute(3, 1, 0, 2).reshape(n_bins, in_channels, batch_size * n_blocks)
    products = products.view(n_bins, -1, batch_size, n_blocks).permute(2, 1, 3, 0)
    outputs = torch.fft.irfft(products, n=n_fft)[..., :valid]
    return outputs.reshape(batch_size, -1, n_blocks * valid)[..., :length] + bias[:, None]


def best_time(function, repetitions: int) -> float:
    function()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--n-fft", default="128,256,512", help="comma-separated block sizes")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = [int(size) for size in args.n_fft.split(",")]
    print(f"# torch {torch.__version__}, {args.threads} threads; time of F.conv1d / time of the FFT convolution")
    print("| channels | frames | dilation | F.conv1d ms | " + " | ".join(f"n_fft {size}" for size in sizes) + " | max error |")
    print("|---" * (len(sizes) + 5) + "|")
    total_direct, total_best = 0.0, 0.0
    with torch.inference_mode():
        for channels, frames in LAYERS:
            hidden_states = torch.randn(1, channels, frames)
            weight = torch.randn(channels, channels, KERNEL_SIZE) / (channels * KERNEL_SIZE) ** 0.5
            bias = torch.randn(channels)
            for dilation in (1, 3, 9):
                direct = best_time(
                    lambda: F.conv1d(hidden_states, weight, bias, padding=3 * dilation, dilation=dilation),
                    args.repetitions,
                )
                expected = F.conv1d(hidden_states, weight, bias, padding=3 * dilation, dilation=dilation)
                cells, error, fastest = [], 0.0, direct
                for n_fft in sizes:
                    if n_fft <= (KERNEL_SIZE - 1) * dilation:
                        cells.append("")
                        continue
                    spectrum = kernel_spectrum(weight, dilation, n_fft)
                    seconds = best_time(
                        lambda: fft_convolution(hidden_states, spectrum, bias, dilation, n_fft), args.repetitions
                    )
                    result = fft_convolution(hidden_states, spectrum, bias, dilation, n_fft)
                    error = max(error, ((result - expected).abs().max() / expected.abs().max()).item())
                    fastest = min(fastest, seconds)
                    cells.append(f"x{direct / seconds:.2f}")
                total_direct += direct
                total_best += fastest
                print(f"| {channels} | {frames} | {dilation} | {direct * 1e3:.0f} | " + " | ".join(cells) + f" | {error:.1e} |")
    print(
        f"\nAll dilated convolutions of 10 s (encode + decode): F.conv1d {total_direct:.2f} s; the faster of the two "
        f"per layer {total_best:.2f} s (x{total_direct / total_best:.2f})"
    )


if __name__ == "__main__":
    main()
