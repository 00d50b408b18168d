"""Stand-in for ``torchaudio`` so the official ``dac`` package imports on a CPU-only torch.

``audiotools`` (a dependency of ``descript-audio-codec``) imports torchaudio at module level, but
only calls it inside audio-file, loudness-filter and codec-augmentation helpers that the DAC
model's ``forward``/``encode``/``decode``/``preprocess`` never reach. The registry's torchaudio
binary does not load against the local CPU torch build, so this empty module takes its place.
Any attribute access fails loudly, so a code path that really needs torchaudio cannot silently
run against the stand-in.
"""

__version__ = "0.0.0+stand-in"


def __getattr__(name: str):
    raise AttributeError(
        f"torchaudio.{name} is not available: this is the stand-in module from "
        "scripts/official_dac_stubs, used only to import the official dac model code"
    )
