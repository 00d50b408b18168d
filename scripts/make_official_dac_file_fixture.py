"""Write small `.dac` files in the official descript-audio-codec 1.0.0 format, without the official package.

The official `DACFile.save` (`dac/model/base.py` in descript-audio-codec 1.0.0) builds

    artifacts = {
        "codes": codes.numpy().astype(np.uint16),                  # (batch * channels, n_codebooks, frames)
        "metadata": {
            "input_db": input_db.numpy().astype(np.float32),       # loudness per batch item, shape (batch,)
            "original_length": original_length,                    # int, samples of the original audio
            "sample_rate": sample_rate,                            # int, rate of the original audio
            "chunk_length": chunk_length,                          # int, code frames per encoded chunk
            "channels": channels,                                  # int
            "padding": padding,                                    # bool, convolution padding during encoding
            "dac_version": "1.0.0",
        },
    }

and writes it with `np.save(f, artifacts)`: a `.npy` file holding a 0-d object array whose pickle is the
dict. `official_dac_artifacts` builds that same dict from numpy arrays and `official_dac_bytes` serialises it
the way `np.save` does. Files written in 2023-2024 came from numpy 1.x, which pickles with protocol 3 and
names `numpy.core.multiarray`; numpy 2.x uses protocol 4 and `numpy._core.multiarray`. Both layouts are
written so the reader is tested against each.

The values are synthetic (no model is run); the codes follow `fixture_codes`, so a test can check every
value. Run from the repository root:

    python scripts/make_official_dac_file_fixture.py
"""

import argparse
import io
import pickle
from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "official_dac"

# A stereo file encoded in three chunks of 7 frames with convolution padding off, as the official chunked
# compress() produces for audio longer than its window.
FIXTURE_CHANNELS = 2
FIXTURE_N_CODEBOOKS = 9
FIXTURE_CHUNK_LENGTH = 7
FIXTURE_FRAMES = 3 * FIXTURE_CHUNK_LENGTH
FIXTURE_INPUT_DB = -23.25
FIXTURE_ORIGINAL_LENGTH = 9000
FIXTURE_SAMPLE_RATE = 48000


def fixture_codes() -> np.ndarray:
    """Codes of the fixture: (channel * 300 + codebook * 97 + frame * 13) % 1024, shape (2, 9, 21)."""
    channel, codebook, frame = np.meshgrid(
        np.arange(FIXTURE_CHANNELS), np.arange(FIXTURE_N_CODEBOOKS), np.arange(FIXTURE_FRAMES), indexing="ij"
    )
    return (channel * 300 + codebook * 97 + frame * 13) % 1024


def official_dac_artifacts(
    codes: np.ndarray,
    *,
    input_db: np.ndarray,
    original_length: int,
    sample_rate: int,
    chunk_length: int,
    channels: int,
    padding: bool,
    dac_version: str = "1.0.0",
) -> dict:
    """The dict the official `DACFile.save` pickles, with the same key order, dtypes and Python types."""
    return {
        "codes": np.asarray(codes).astype(np.uint16),
        "metadata": {
            "input_db": np.asarray(input_db).astype(np.float32),
            "original_length": original_length,
            "sample_rate": sample_rate,
            "chunk_length": chunk_length,
            "channels": channels,
            "padding": padding,
            "dac_version": dac_version,
        },
    }


def official_dac_bytes(artifacts: dict, *, numpy1_layout: bool = False) -> bytes:
    """Serialise `artifacts` as `np.save` does: with the installed numpy, or as numpy 1.x wrote it."""
    buffer = io.BytesIO()
    if not numpy1_layout:
        np.save(buffer, artifacts)
        return buffer.getvalue()
    container = np.asanyarray(artifacts)  # the 0-d object array np.save builds from a dict
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(container))
    # Protocol 3 names globals as text lines ("c<module>\n<name>\n"), so the module can be renamed in place.
    pickled = pickle.dumps(container, protocol=3)
    renamed = pickled.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    if renamed == pickled and b"cnumpy.core.multiarray\n" not in pickled:
        raise RuntimeError("numpy did not pickle through numpy(._)core.multiarray; the layout has changed")
    return buffer.getvalue() + renamed


def fixture_artifacts() -> dict:
    """The dict of the committed fixtures."""
    return official_dac_artifacts(
        fixture_codes(),
        input_db=np.array([FIXTURE_INPUT_DB]),
        original_length=FIXTURE_ORIGINAL_LENGTH,
        sample_rate=FIXTURE_SAMPLE_RATE,
        chunk_length=FIXTURE_CHUNK_LENGTH,
        channels=FIXTURE_CHANNELS,
        padding=False,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=FIXTURE_DIR)
    output_dir = parser.parse_args(argv).output_dir
    artifacts = fixture_artifacts()
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, numpy1_layout in (("official_numpy2.dac", False), ("official_numpy1.dac", True)):
        path = output_dir / name
        path.write_bytes(official_dac_bytes(artifacts, numpy1_layout=numpy1_layout))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
