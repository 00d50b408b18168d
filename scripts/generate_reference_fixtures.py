"""Generate parity fixtures from the OFFICIAL Descript Audio Codec (``descript-audio-codec==1.0.0``).

The fixtures in ``tests/fixtures/reference/`` let our tests check exact parity with the official
model without the official package being a test dependency. This script is the only place that
imports the official ``dac`` package; it is run by hand, once, in a separate environment.

Environment (the official package cannot be installed in the project venv: its dependencies pull
torchaudio, whose registry binary does not load against the local CPU torch). Build it exactly so:

    python3 -m venv /tmp/official_venv
    /tmp/official_venv/bin/pip install torch==2.13.0          # the local CPU build; installs first
    /tmp/official_venv/bin/pip install --no-deps \\
        descript-audio-codec==1.0.0 descript-audiotools==0.7.2 \\
        argbind==0.3.9 docstring-parser==0.18.0 pyyaml==6.0.3 einops==0.8.2 numpy==2.4.6 \\
        safetensors==0.8.0 tqdm==4.70.1 scipy==1.17.1 soundfile==0.14.0 cffi==2.1.1 \\
        julius==0.2.8 flatten-dict==0.5.0 importlib-resources==7.1.0 ffmpy==1.0.0 \\
        rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 randomname==0.2.1 \\
        tensorboard==2.21.0 protobuf==7.36.2 absl-py==2.5.1

``--no-deps`` keeps pip from replacing the CPU torch with a CUDA build and from pulling torchaudio.
The packages listed are the real ones that ``import dac`` needs at module level (audiotools imports
its whole toolbox: rich, tensorboard, scipy, ...); ``pip check`` then reports unmet requirements
(librosa, ipython, matplotlib, grpcio, ...) that no module imported on the model's path uses.
The only stand-in is ``torchaudio``, in
``scripts/official_dac_stubs/torchaudio.py``: audiotools imports it at module level but calls it
only in file I/O, loudness filtering and codec augmentation, which the model's ``encode``,
``decode``, ``forward`` and ``quantizer.from_codes`` never reach (the stand-in raises on any use).
This script puts that folder on ``sys.path`` itself.

Run from the repository root:

    /tmp/official_venv/bin/python scripts/generate_reference_fixtures.py
    /tmp/official_venv/bin/python scripts/generate_reference_fixtures.py --verify

The first writes the fixtures; ``--verify`` regenerates them into a temporary folder and checks
that every file is byte-identical to the committed one.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

STUB_DIR = Path(__file__).resolve().parent / "official_dac_stubs"
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reference"

SEED = 0
BATCH_SIZE = 2
SIGNAL_SECONDS = 0.4
FORWARD_TRIM = 3  # forward() input is this many samples short of a hop multiple, to exercise preprocess
SHORT_CODEBOOKS_DECODED = 3
SHORT_CODEBOOKS_ENCODED = 4

_REDUCED_44KHZ = dict(
    encoder_dim=8,
    encoder_rates=[2, 4, 8, 8],
    latent_dim=128,
    decoder_dim=96,
    decoder_rates=[8, 8, 4, 2],
    n_codebooks=9,
    codebook_size=1024,
    codebook_dim=8,
    sample_rate=44100,
)
# Reduced widths, released shapes: strides, codebook counts and the latent relation of SPEC section 3.
FIXTURE_CONFIGS = {
    "dac_44khz": _REDUCED_44KHZ,
    "dac_44khz_16kbps": {**_REDUCED_44KHZ, "latent_dim": 32, "n_codebooks": 18},
    "dac_24khz": {
        **_REDUCED_44KHZ,
        "encoder_rates": [2, 4, 5, 8],
        "decoder_rates": [8, 5, 4, 2],
        "n_codebooks": 32,
        "sample_rate": 24000,
    },
}
FULL_SIZE_CONFIGS = {
    "44khz": {},
    "44khz_16kbps": {"latent_dim": 128, "n_codebooks": 18},
    "24khz": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 32, "sample_rate": 24000},
    "16khz": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 12, "sample_rate": 16000},
}


def import_official_dac():
    """Import the official package with the torchaudio stand-in on the path."""
    sys.path.insert(0, str(STUB_DIR))
    warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
    try:
        import dac
    except ImportError as error:
        raise SystemExit(
            f"{error}: this script needs descript-audio-codec 1.0.0, installed in a separate venv as the "
            "module docstring describes (python scripts/generate_reference_fixtures.py --help)."
        ) from error

    if dac.__version__ != "1.0.0":
        raise RuntimeError(f"expected descript-audio-codec 1.0.0, found {dac.__version__}")
    return dac


def configure_determinism() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def official_saved_kwargs(model) -> dict:
    """The ``metadata["kwargs"]`` that the official ``DAC.save(..., package=False)`` writes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        model.save(str(path), package=False)
        saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["metadata"]["kwargs"]


def build_perturbed_model(dac, kwargs: dict, seed: int):
    """Official model with every weight-norm gain, Snake alpha and bias moved off its initial value."""
    torch.manual_seed(seed)
    model = dac.model.DAC(**kwargs)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight_g"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5, generator=generator))
            elif name.endswith("alpha"):
                parameter.uniform_(0.5, 2.0, generator=generator)
            elif name.endswith("bias"):
                parameter.normal_(0.0, 0.05, generator=generator)
    return model.eval()


def reference_signals(sample_rate: int, length: int, seed: int) -> torch.Tensor:
    """Two signals, peak about 0.5: a three-partial tone, and a linear chirp over a noise floor."""
    time = np.arange(length, dtype=np.float64) / sample_rate
    rng = np.random.default_rng(seed)
    tones = (
        0.25 * np.sin(2 * np.pi * 220.0 * time)
        + 0.15 * np.sin(2 * np.pi * 1375.0 * time + 0.3)
        + 0.08 * np.sin(2 * np.pi * 5210.0 * time + 1.1)
        + 0.02 * rng.standard_normal(length)
    )
    start_hz, stop_hz, duration = 80.0, 0.4 * sample_rate, length / sample_rate
    chirp_phase = 2 * np.pi * (start_hz * time + (stop_hz - start_hz) * time**2 / (2 * duration))
    chirp = 0.4 * np.sin(chirp_phase) * np.hanning(length) + 0.06 * rng.standard_normal(length)
    return torch.from_numpy(np.stack([tones, chirp])[:, None, :].astype(np.float32))


def record_outputs(model, input_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything the official model computes that a parity test needs, in eval mode."""
    forward_length = input_values.shape[-1] - FORWARD_TRIM
    with torch.no_grad():
        latents = model.encoder(input_values)
        quantized, codes, projected, commitment_loss, codebook_loss = model.encode(input_values)
        quantized_4, codes_4, _, _, _ = model.encode(input_values, n_quantizers=SHORT_CODEBOOKS_ENCODED)
        quantized_from_codes = model.quantizer.from_codes(codes)[0]
        quantized_3 = model.quantizer.from_codes(codes[:, :SHORT_CODEBOOKS_DECODED])[0]
        forward = model(input_values[..., :forward_length])
        return {
            "input_values": input_values,
            "latents": latents,
            "audio_codes": codes,
            "projected_latents": projected,
            "quantized_representation": quantized,
            "quantized_representation_from_codes": quantized_from_codes,
            "commitment_loss": commitment_loss,
            "codebook_loss": codebook_loss,
            "audio_values": model.decode(quantized),
            "audio_codes_4": codes_4,
            "quantized_representation_4": quantized_4,
            "audio_values_3_codebooks": model.decode(quantized_3),
            "forward_input_values": input_values[..., :forward_length].contiguous(),
            "forward_audio_values": forward["audio"],
            "forward_audio_codes": forward["codes"],
        }


def min_code_margin(model, projected_latents: torch.Tensor) -> float:
    """Smallest gap between the nearest and second-nearest codebook entry over all chosen codes.

    Tells a parity test how far its float results may drift before a code could flip.
    """
    margins = []
    offset = 0
    for quantizer in model.quantizer.quantizers:
        width = quantizer.codebook_dim
        encodings = F.normalize(projected_latents[:, offset : offset + width].transpose(1, 2).reshape(-1, width))
        codebook = F.normalize(quantizer.codebook.weight.detach())
        distances = torch.cdist(encodings.double(), codebook.double())
        nearest_two = distances.topk(2, dim=1, largest=False).values
        margins.append((nearest_two[:, 1] - nearest_two[:, 0]).min().item())
        offset += width
    return min(margins)


def check_consistency(model, outputs: dict[str, torch.Tensor]) -> None:
    """Invariants of the official outputs; failing means the fixtures would mislead."""
    repeat = record_outputs(model, outputs["input_values"])
    for name, tensor in outputs.items():
        if not torch.equal(tensor, repeat[name]):
            raise RuntimeError(f"official output {name!r} is not bit-identical across two runs")
    if not torch.equal(outputs["audio_codes_4"], outputs["audio_codes"][:, :SHORT_CODEBOOKS_ENCODED]):
        raise RuntimeError("codes from encode(n_quantizers=4) are not a prefix of the full codes")
    if len(torch.unique(outputs["audio_codes"])) < 16:
        raise RuntimeError("codes are nearly constant; the fixture would not test the quantizer")


def describe_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in tensors.items()}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        temporary = handle.name
    save_file({name: t.detach().contiguous() for name, t in tensors.items()}, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def write_fixture(dac, name: str, kwargs: dict, output_dir: Path) -> None:
    configure_determinism()
    model = build_perturbed_model(dac, kwargs, SEED)
    hop_length = math.prod(kwargs["encoder_rates"])
    num_frames = round(SIGNAL_SECONDS * kwargs["sample_rate"] / hop_length)
    input_values = reference_signals(kwargs["sample_rate"], num_frames * hop_length, SEED)
    outputs = record_outputs(model, input_values)
    check_consistency(model, outputs)

    atomic_save_safetensors(output_dir / f"{name}_state_dict.safetensors", model.state_dict())
    atomic_save_safetensors(output_dir / f"{name}_io.safetensors", outputs)
    atomic_write_json(
        output_dir / f"{name}.json",
        {
            "name": name,
            "official_package": f"descript-audio-codec {dac.__version__}",
            "torch_version": torch.__version__,
            "kwargs": official_saved_kwargs(model),
            "seed": SEED,
            "perturbation": {
                "weight_g": "multiplied elementwise by uniform(0.5, 1.5)",
                "alpha": "uniform(0.5, 2.0)",
                "bias": "normal(0, 0.05)",
                "generator": "torch.Generator().manual_seed(seed + 1), parameters in named_parameters() order",
            },
            "hop_length": hop_length,
            "batch_size": BATCH_SIZE,
            "num_frames": num_frames,
            "input_length": input_values.shape[-1],
            "decoded_length": outputs["audio_values"].shape[-1],
            "forward_input_length": outputs["forward_input_values"].shape[-1],
            "forward_output_length": outputs["forward_audio_values"].shape[-1],
            "min_code_distance_margin": min_code_margin(model, outputs["projected_latents"]),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "io": describe_tensors(outputs),
        },
    )


def write_full_size_facts(dac, output_dir: Path) -> None:
    """Parameter counts of the four released configurations and the 44 kHz state_dict layout."""
    counts = {}
    for name, kwargs in FULL_SIZE_CONFIGS.items():
        model = dac.model.DAC(**kwargs)
        counts[name] = {"kwargs": official_saved_kwargs(model), "num_parameters": sum(p.numel() for p in model.parameters())}
        if name == "44khz":
            lines = [f"{key} {json.dumps(list(t.shape))}" for key, t in model.state_dict().items()]
            atomic_write_bytes(output_dir / "official_44khz_keys.txt", ("\n".join(lines) + "\n").encode())
    atomic_write_json(output_dir / "official_full_size_parameter_counts.json", counts)


def generate(output_dir: Path) -> None:
    dac = import_official_dac()
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, kwargs in FIXTURE_CONFIGS.items():
        write_fixture(dac, name, kwargs, output_dir)
        print(f"wrote {name}")
    write_full_size_facts(dac, output_dir)
    print("wrote full-size parameter counts and official_44khz_keys.txt")


def verify(committed_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_dir = Path(tmp)
        generate(fresh_dir)
        names = sorted(p.name for p in fresh_dir.iterdir())
        _, mismatch, missing = filecmp.cmpfiles(committed_dir, fresh_dir, names, shallow=False)
    if mismatch or missing:
        raise SystemExit(f"fixtures differ from a fresh run: differing {mismatch}, missing {missing}")
    print(f"all {len(names)} generated files are byte-identical to {committed_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--verify", action="store_true", help="regenerate into a temp dir and compare bytes")
    args = parser.parse_args()
    if args.verify:
        verify(args.output_dir)
    else:
        generate(args.output_dir)


if __name__ == "__main__":
    main()
