"""Would Winograd convolution speed up DAC's residual units on CPU? A measured answer (a dropped lever).

Winograd's minimal filtering F(m, 7) computes m outputs of a 7-tap convolution from n = m + 6 transformed
inputs, so the matrix products shrink to n / (7 m) of the direct convolution's: 8/14 for F(2, 7), 9/21 for
F(3, 7). `winograd_convolution.cpp` (built on first use with `torch.utils.cpp_extension`, which needs a C++
compiler) runs the first half of a residual unit, Snake, dilated convolution, bias and Snake, in one pass over
time chunks that stay in cache, with one `torch.bmm` for the n products. This script times it
against the package's eager path for every width and frame rate of the 44.1 kHz model's residual units and
reports the error relative to the largest output. docs/benchmarks.md has the figures and why the lever was
dropped.

    python benchmarks/bench_winograd_convolution.py --threads 2
"""

from __future__ import annotations

import argparse
import functools
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from modeling_dac.modeling_dac import DacSnake1d

from bench_fft_convolution import KERNEL_SIZE, LAYERS, best_time

__all__ = ["load_kernel", "main", "snake_conv_snake", "transform_weight", "winograd_transforms"]

# Interpolation points (besides infinity) of the Toom-Cook construction, the usual small ones first.
POINTS = [0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), Fraction(1, 4), Fraction(3, 2), Fraction(-3, 2)]


def _vandermonde(points: list[Fraction], columns: int) -> list[list[Fraction]]:
    """Rows (1, p, p^2, ...) for each finite point, then the row of the point at infinity."""
    rows = [[Fraction(point) ** power for power in range(columns)] for point in points]
    return rows + [[Fraction(0)] * (columns - 1) + [Fraction(1)]]


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss-Jordan inverse (the transforms must not carry float rounding of their own)."""
    size = len(matrix)
    rows = [row[:] + [Fraction(int(i == j)) for j in range(size)] for i, row in enumerate(matrix)]
    for column in range(size):
        pivot = next(r for r in range(column, size) if rows[r][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        rows[column] = [value / rows[column][column] for value in rows[column]]
        for r in range(size):
            if r != column and rows[r][column] != 0:
                factor = rows[r][column]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[column])]
    return [row[size:] for row in rows]


@functools.lru_cache  # exact arithmetic takes milliseconds: not inside the timed calls
def winograd_transforms(outputs_per_tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(A^T (m, n), G (n, 7), B^T (n, n))` in float64 with `y = A^T [(G g) * (B^T x)]` for the correlation
    `y[i] = sum_j g[j] x[i + j]` of an n-sample tile x with a 7-tap kernel g (the transpose of Toom-Cook)."""
    m = outputs_per_tile
    n = m + KERNEL_SIZE - 1
    if not 1 <= m <= len(POINTS) - KERNEL_SIZE + 2:
        raise ValueError(f"outputs_per_tile must be 1 to {len(POINTS) - KERNEL_SIZE + 2}, got {m}")
    points = POINTS[: n - 1]
    as_tensor = lambda rows: torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)  # noqa: E731
    output_transform = as_tensor(zip(*_vandermonde(points, m)))
    kernel_transform = as_tensor(_vandermonde(points, KERNEL_SIZE))
    input_transform = as_tensor(zip(*_inverse(_vandermonde(points, n))))
    return output_transform, kernel_transform, input_transform


def load_kernel():
    """Build (once, cached by torch) and import the C++ kernel."""
    from torch.utils.cpp_extension import load

    source = Path(__file__).with_name("winograd_convolution.cpp")
    return load("dac_winograd_convolution", [str(source)], extra_cflags=["-O3", "-march=native"])


def snake_activation(alpha: torch.Tensor) -> DacSnake1d:
    """The package's Snake with the given alpha `(1, channels, 1)`."""
    activation = DacSnake1d(alpha.shape[1])
    activation.alpha.data = alpha
    return activation


def eager_snake_conv_snake(hidden_states, alpha1, weight, bias, alpha2, dilation: int) -> torch.Tensor:
    """What the package runs for the first half of a residual unit at inference."""
    activated = snake_activation(alpha1)(hidden_states)
    return snake_activation(alpha2)(F.conv1d(activated, weight, bias, padding=3 * dilation, dilation=dilation))


def transform_weight(weight: torch.Tensor, outputs_per_tile: int) -> torch.Tensor:
    """`(out, in, 7) -> (n, out, in)`: the kernel transform, done once per layer (in float64, then rounded)."""
    kernel_transform = winograd_transforms(outputs_per_tile)[1]
    return torch.einsum("pj,ocj->poc", kernel_transform, weight.double()).float().contiguous()


def snake_conv_snake(
    kernel, hidden_states, alpha1, transformed_weight, bias, alpha2, dilation: int, tiles_per_chunk: int = 256
) -> torch.Tensor:
    """`eager_snake_conv_snake` through the C++ kernel, with weights from `transform_weight`."""
    outputs_per_tile = transformed_weight.shape[0] - KERNEL_SIZE + 1
    output_transform, _, input_transform = winograd_transforms(outputs_per_tile)
    alpha1, alpha2 = alpha1.reshape(-1, 1), alpha2.reshape(-1, 1)
    return kernel.snake_conv_snake(
        hidden_states.contiguous(), alpha1, (alpha1 + 1e-9).reciprocal(), transformed_weight, bias, alpha2,
        (alpha2 + 1e-9).reciprocal(), input_transform, output_transform, dilation, tiles_per_chunk,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seconds", type=float, default=3.0, help="audio duration the layer lengths stand for")
    parser.add_argument("--tile-sizes", default="2,3", help="comma-separated m of F(m, 7)")
    parser.add_argument("--tiles-per-chunk", type=int, default=256)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kernel = load_kernel()
    sizes = [int(size) for size in args.tile_sizes.split(",")]
    print(f"# torch {torch.__version__}, {args.threads} threads, {args.seconds:g} s of audio; "
          "time of the eager path / time of the kernel (max error relative to the largest output)")
    print("| channels | frames | dilation | eager ms | " + " | ".join(
        f"F({m},7), products {m + KERNEL_SIZE - 1}/{KERNEL_SIZE * m}" for m in sizes) + " |")
    print("|---" * (len(sizes) + 4) + "|")
    totals = {"eager": 0.0, **{m: 0.0 for m in sizes}}
    with torch.inference_mode():
        for channels, frames_in_10s in LAYERS:
            frames = int(frames_in_10s * args.seconds / 10)
            hidden_states = torch.randn(1, channels, frames)
            alpha1, alpha2 = torch.rand(1, channels, 1) + 0.5, torch.rand(1, channels, 1) + 0.5
            weight = torch.randn(channels, channels, KERNEL_SIZE) / (channels * KERNEL_SIZE) ** 0.5
            bias = torch.randn(channels) * 0.1
            for dilation in (1, 3, 9):
                layer = (hidden_states, alpha1, weight, bias, alpha2, dilation)
                expected = eager_snake_conv_snake(*layer)
                eager = best_time(lambda: eager_snake_conv_snake(*layer), args.repetitions)
                totals["eager"] += eager
                cells = []
                for m in sizes:
                    winograd_layer = (hidden_states, alpha1, transform_weight(weight, m), bias, alpha2, dilation)
                    run = lambda: snake_conv_snake(kernel, *winograd_layer, args.tiles_per_chunk)  # noqa: E731
                    error = ((run() - expected).abs().max() / expected.abs().max()).item()
                    seconds = best_time(run, args.repetitions)
                    totals[m] += seconds
                    cells.append(f"x{eager / seconds:.2f} ({error:.0e})")
                print(f"| {channels} | {frames} | {dilation} | {eager * 1e3:.0f} | " + " | ".join(cells) + " |")
    print(f"\nAll residual units' first halves (encode + decode): eager {totals['eager']:.2f} s; " + "; ".join(
        f"F({m},7) {totals[m]:.2f} s (x{totals['eager'] / totals[m]:.2f})" for m in sizes))


if __name__ == "__main__":
    main()
