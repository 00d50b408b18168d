"""Write hub_configs/<name>/: config.json, preprocessor_config.json and a model card per released DAC model.

The released architectures are those of the official descript-audio-codec 1.0.0 weights; `tiny` is the small
config the tests use. Run from the repo root:

    .venv/bin/python scripts/make_hub_configs.py
"""

import argparse
from pathlib import Path

from modeling_dac import DacConfig, DacFeatureExtractor, DacModel

RELEASED = {
    "dac_44khz": dict(sampling_rate=44100, downsampling_ratios=[2, 4, 8, 8], n_codebooks=9),
    "dac_44khz_16kbps": dict(sampling_rate=44100, downsampling_ratios=[2, 4, 8, 8], hidden_size=128, n_codebooks=18),
    "dac_24khz": dict(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8], n_codebooks=32),
    "dac_16khz": dict(sampling_rate=16000, downsampling_ratios=[2, 4, 5, 8], n_codebooks=12),
    "tiny": dict(
        sampling_rate=16000,
        encoder_hidden_size=8,
        downsampling_ratios=[2, 4, 5, 8],
        decoder_hidden_size=64,
        n_codebooks=4,
        codebook_size=64,
    ),
}

# Arguments of the official `python -m dac download` that fetch each model's .pth.
OFFICIAL_WEIGHTS = {
    "dac_44khz": "--model_type 44khz --model_bitrate 8kbps",
    "dac_44khz_16kbps": "--model_type 44khz --model_bitrate 16kbps",
    "dac_24khz": "--model_type 24khz",
    "dac_16khz": "--model_type 16khz",
}


def model_card(name: str, config: DacConfig, trainable_parameters: int) -> str:
    bitrates = ", ".join(
        f"{n}: {config.bitrate_at(n) / 1000:.2f}" for n in sorted({1, 2, 4, config.n_codebooks // 2, config.n_codebooks})
    )
    source = OFFICIAL_WEIGHTS.get(name)
    weights = (
        f"Convert the official weights (`python -m dac download {source}` in the official package) with "
        "`dac convert WEIGHTS.pth OUT_DIR`, or load the Transformers port's checkpoint of the same name "
        "with `DacModel.from_pretrained`."
        if source
        else "Architecture used by the test suite; it has no released weights."
    )
    return f"""---
library_name: modeling_dac
tags: [audio, codec, dac, audio-tokenizer]
license: mit
---

# {name}

Descript Audio Codec (Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN", NeurIPS 2023) in the
`modeling_dac` layout. {weights}

| field | value |
|---|---|
| sampling_rate | {config.sampling_rate} Hz |
| downsampling_ratios | {config.downsampling_ratios} |
| upsampling_ratios | {config.upsampling_ratios} |
| hop_length | {config.hop_length} samples |
| frame_rate | {config.frame_rate:.2f} frames/s |
| encoder_hidden_size / decoder_hidden_size | {config.encoder_hidden_size} / {config.decoder_hidden_size} |
| hidden_size (latent) | {config.hidden_size} |
| n_codebooks x codebook_size (codebook_dim) | {config.n_codebooks} x {config.codebook_size} ({config.codebook_dim}) |
| bitrate at all codebooks | {config.bitrate / 1000:.2f} kbps |
| parameters (trainable, weight norm as g/v) | {trainable_parameters / 1e6:.2f}M |

Bitrate in kbps by number of codebooks used (`n_quantizers`): {bitrates}.

```python
from modeling_dac import DacConfig, DacModel
model = DacModel(DacConfig.from_pretrained("hub_configs/{name}"))  # random weights of this architecture
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path(__file__).resolve().parent.parent / "hub_configs")
    root = parser.parse_args(argv).output_dir
    for name, fields in RELEASED.items():
        config = DacConfig(**fields, quantizer_dropout=0.0 if name == "tiny" else 0.5)
        config.save_pretrained(root / name)
        DacFeatureExtractor.from_model_config(config).save_pretrained(root / name)
        model = DacModel(config)
        model.apply_weight_norm()
        (root / name / "README.md").write_text(model_card(name, config, model.num_parameters()))
        print(name, f"{model.num_parameters() / 1e6:.2f}M")


if __name__ == "__main__":
    main()
