"""`make demo` runs examples/demo.py: it must work offline and produce every promised output."""

import subprocess
import sys

from docs_examples import REPO


def test_demo_round_trips_the_bundled_clip(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("Bitrate:", "Compression ratio", "Mel distance", "SI-SDR"):
        assert line in result.stdout
    for name in ("speech_and_music.dac", "speech_and_music_original.wav", "speech_and_music_reconstructed.wav", "spectrograms.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_untrained_fallback_model_can_be_made_again_in_the_same_folder(tmp_path):
    # What the demo uses when the repository's checkpoint is missing; a second `make demo` rewrites it.
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from demo import untrained_fixture_model
    finally:
        sys.path.remove(str(REPO / "examples"))
    first = untrained_fixture_model(tmp_path)
    again = untrained_fixture_model(tmp_path)
    assert again.config.to_dict() == first.config.to_dict()
