"""Checks that this machine's bf16 convolutions are right for every convolution shape of a DAC model.

bf16 inference (docs/fast_inference.md) trusts the convolution library (oneDNN on CPUs, cuDNN on GPUs) to round
only its output. On an Intel Xeon with AMX (torch 2.13.0+cpu) oneDNN's bf16 strided convolution is wrong, with
an error about the size of its output, for a few small shapes: 8 or 16 input channels with stride 4 or 8, in the
usual `(batch, channels, frames)` layout for some and channels last (our CPU time tiles) for others. Every layer of
the released configs and of the reference checkpoint is right there, but a narrow model of your own may not be.

Each distinct convolution of the model runs in both layouts on random input, in bf16 and in fp32 on the same
bf16-rounded input and weights; the relative error (mean absolute difference over mean magnitude) is about 0.2%
when only the output rounding differs. The script exits with status 1 when any shape exceeds `--tolerance`.

    python benchmarks/check_bf16_convolutions.py                      # the 44.1, 24 and 16 kHz configs
    python benchmarks/check_bf16_convolutions.py --configs checkpoints/dac_reference
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modeling_dac import DacModel, modeling_dac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_config  # noqa: E402

__all__ = ["ConvolutionCheck", "check_model", "main"]

LAYOUTS = ("channels first", "channels last")


@dataclass
class ConvolutionCheck:
    """The bf16 error of one convolution shape in one layout; `layer` is the model's first layer of that shape."""

    layer: str
    shape: str
    layout: str
    relative_error: float


def distinct_convolutions(model: DacModel) -> dict[str, nn.Conv1d | nn.ConvTranspose1d]:
    """The first layer of each convolution shape, by name; single-channel ends (input and output convs) included."""
    layers, seen = {}, set()
    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            shape = (type(layer), layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.dilation)
            if shape not in seen:
                seen.add(shape)
                layers[name] = layer
    return layers


def convolve(layer: nn.Conv1d | nn.ConvTranspose1d, hidden_states, weight, bias, layout: str) -> torch.Tensor:
    """`layer`'s convolution with the given tensors, `(batch, channels, frames)` in and out, in `layout`."""
    transposed, stride, dilation = isinstance(layer, nn.ConvTranspose1d), layer.stride[0], layer.dilation[0]
    if layout == "channels first":
        if transposed:
            return F.conv_transpose1d(hidden_states, weight, bias, stride=stride, padding=layer.padding[0])
        return F.conv1d(hidden_states, weight, bias, stride=stride, padding=layer.padding[0], dilation=dilation)
    # As the time tiles call it: channels-last input and weight; a tile's transposed convolution pads `stride`.
    output = modeling_dac._channels_last_conv(
        hidden_states.transpose(1, 2).contiguous(),
        modeling_dac._channels_last_image(weight),
        bias,
        dilation=dilation,
        stride=stride,
        padding=stride if transposed else layer.padding[0],
        transposed=transposed,
    )
    return output.transpose(1, 2)


def check_model(model: DacModel, device: torch.device | str = "cpu", frames: int = 700) -> list[ConvolutionCheck]:
    """Every distinct convolution of `model`, in both layouts, in bf16 against fp32 (see the module docstring)."""
    generator = torch.Generator().manual_seed(0)
    checks = []
    with torch.inference_mode():
        for name, layer in distinct_convolutions(model).items():
            hidden_states = torch.randn(1, layer.in_channels, frames, generator=generator).to(device, torch.bfloat16)
            weight, bias = layer.weight.to(device, torch.bfloat16), layer.bias.to(device, torch.bfloat16)
            shape = (
                f"{type(layer).__name__}({layer.in_channels}, {layer.out_channels}, kernel {layer.kernel_size[0]}, "
                f"stride {layer.stride[0]}, dilation {layer.dilation[0]})"
            )
            for layout in LAYOUTS:
                output = convolve(layer, hidden_states, weight, bias, layout).float()
                reference = convolve(layer, hidden_states.float(), weight.float(), bias.float(), layout)
                error = ((output - reference).abs().mean() / reference.abs().mean()).item()
                checks.append(ConvolutionCheck(name, shape, layout, error))
    return checks


def main(argv: list[str] | None = None) -> list[ConvolutionCheck]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs",
        default="44khz,24khz,16khz",
        help="comma-separated: released configs by name (44khz, 24khz, 16khz, tiny) or save_pretrained directories "
        "(their weights are used)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tolerance", type=float, default=0.02, help="largest relative error that passes")
    args = parser.parse_args(argv)
    failures = []
    for name in args.configs.split(","):
        is_checkpoint = (Path(name) / "model.safetensors").is_file()
        model = DacModel.from_pretrained(name) if is_checkpoint else DacModel(load_config(name))
        checks = check_model(model, args.device)
        worst = max(checks, key=lambda check: check.relative_error)
        wrong = [check for check in checks if check.relative_error > args.tolerance]
        print(
            f"{name}: {len(checks) // len(LAYOUTS)} convolution shapes x {len(LAYOUTS)} layouts in bf16 on "
            f"{args.device}; worst relative error {worst.relative_error:.2%} ({worst.layer}, {worst.layout}); "
            f"{len(wrong)} above {args.tolerance:.0%}"
        )
        for check in wrong:
            print(f"  WRONG {check.relative_error:.1%}: {check.layer} {check.shape}, {check.layout}")
        failures += wrong
    if failures:
        print("bf16 gives wrong results for these shapes on this machine: use fp32 for such a model here.")
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
