"""Build the bundled demo clip examples/audio/speech_and_music.flac: 3 s of speech, then 3 s of music, 44.1 kHz mono.

Speech comes from espeak-ng (Debian package `espeak-ng`, GPL-3 program; its output is not restricted); the music
is synthesised here (additive harmonics for a melody over chords, plus a noise hi-hat), so the clip is free to ship.
Run from the repo root:

    apt-get install espeak-ng && .venv/bin/python scripts/make_demo_audio.py
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from modeling_dac.audio import load_audio, normalize_loudness, resample, save_audio

DEMO_CLIP = Path(__file__).resolve().parent.parent / "examples" / "audio" / "speech_and_music.flac"
SAMPLING_RATE = 44100
SENTENCE = "This is the Descript audio codec, compressing speech and music into tokens."


def speech(seconds: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), SENTENCE], check=True)
        audio, rate = load_audio(path)
    audio = resample(audio[0], rate, SAMPLING_RATE)
    return np.pad(audio, (0, max(0, int(seconds * SAMPLING_RATE) - len(audio))))[: int(seconds * SAMPLING_RATE)]


def tone(frequency: float, seconds: float, partials: int = 6) -> np.ndarray:
    time = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    wave = sum(np.sin(2 * np.pi * frequency * k * time) / k**1.5 for k in range(1, partials + 1))
    envelope = np.minimum(1.0, time / 0.01) * np.exp(-3.0 * time)
    return wave * envelope


def music(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.zeros(int(seconds * SAMPLING_RATE))
    beat = 0.25
    melody = [523.25, 587.33, 659.25, 783.99, 659.25, 587.33, 523.25, 440.0]
    chords = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    for step in range(int(seconds / beat)):
        start = int(step * beat * SAMPLING_RATE)
        note = tone(melody[step % len(melody)], beat * 1.5)
        out[start : start + len(note)] += 0.5 * note[: len(out) - start]
        if step % 4 == 0:
            for frequency in chords[(step // 4) % len(chords)]:
                chord = tone(frequency, beat * 4, partials=4)
                out[start : start + len(chord)] += 0.25 * chord[: len(out) - start]
        hat = rng.standard_normal(int(0.03 * SAMPLING_RATE)) * np.exp(-np.linspace(0, 8, int(0.03 * SAMPLING_RATE)))
        out[start : start + len(hat)] += 0.1 * hat[: len(out) - start]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEMO_CLIP, help="where to write the clip (flac)")
    output = parser.parse_args(argv).output
    clip = np.concatenate([speech(3.0), music(3.0)]).astype(np.float32)
    clip, _ = normalize_loudness(clip[None, :], SAMPLING_RATE, target_lufs=-18.0)
    clip = np.clip(clip, -0.99, 0.99)
    save_audio(output, clip, SAMPLING_RATE)
    print(f"wrote {output} ({clip.shape[-1] / SAMPLING_RATE:.1f} s)")


if __name__ == "__main__":
    main()
