"""Build the training data of the reference checkpoint offline, from scratch: speech, music and general sounds.

    python scripts/build_reference_dataset.py --output_dir data/reference

Every clip is synthesised on this machine with Debian packages and numpy, so the data can be rebuilt anywhere
without network access and carries no third-party recordings:

- speech: espeak-ng (GPL-3, https://github.com/espeak-ng/espeak-ng) reading sentences and numbers in many voices
  and languages, at varied rate and pitch;
- music: random MIDI pieces (scales, chords, melodies, drums; written with `mido`) rendered by FluidSynth with the
  FluidR3_GM General MIDI soundfont (Debian `fluid-soundfont-gm`, MIT licence, by Frank Wen);
- general sounds: numpy noises (white, pink, brown, band-passed), chirps, modal impacts, clicks, FM tones, rain,
  and mixtures of all three groups.

The output is three Hugging Face datasets written as parquet: `<output_dir>/train/`, `<output_dir>/validation/`
(checkpoint selection during training) and `<output_dir>/heldout/` (never trained on nor used for selection; only
`dac eval` reads it). Each split comes from its own random seeds, and the held-out speech also uses voices the
other splits never use. Columns: `audio` (`Audio`, FLAC at 16 kHz), `category` (speech, music,
general, mixture) and `description` (how the clip was made).
"""

import argparse
import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile
from datasets import Audio, Dataset
from tqdm.auto import tqdm

from modeling_dac.audio import load_audio, normalize_loudness, resample

__all__ = ["DatasetSizes", "build_split", "main", "make_clip"]

SAMPLING_RATE = 16000
CATEGORIES = ("speech", "music", "general", "mixture")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
ESPEAK = "espeak-ng"
FLUIDSYNTH = "fluidsynth"

# Voices of the held-out split only: speech in languages and voice variants training never hears.
HELDOUT_VOICES = ("sv", "hu", "pt-BR+f2", "en-us+m7", "tr", "hi")
TRAINING_VOICES = (
    "en", "en-us", "en+f3", "en+m3", "en-us+f4", "en+klatt", "en-gb-x-rp", "de", "de+f2", "fr", "fr+m2", "es",
    "es-419", "it", "it+f1", "nl", "pl", "ru", "cs", "fi", "da", "nb", "el", "ro", "id", "vi", "cmn", "ja",
    "ko", "ar", "sw", "pt", "uk", "ca", "eu", "cy", "ta", "bn",
)
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A codec turns sound into a short sequence of numbers and back again.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "Would you like a cup of tea, or would you rather have some coffee?",
    "The train leaves at half past seven from platform number nine.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Listen carefully: every sound you hear can be written down as a signal.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Die Sonne scheint, und die Kinder spielen im Garten.",
    "Le petit chat dort sur le canapé pendant que la pluie tombe.",
    "El tren llega a la estación a las ocho de la mañana.",
    "La musica riempie la stanza di una luce calda.",
    "Het weer is vandaag mooi, dus we gaan naar het strand.",
)
# General MIDI programs (0-based) grouped roughly by family, to cover timbres from piano to synth pads.
MELODIC_PROGRAMS = (0, 1, 4, 6, 11, 12, 19, 21, 24, 25, 26, 30, 32, 33, 40, 41, 42, 48, 52, 56, 57, 60, 65, 68, 71,
                    73, 75, 80, 81, 88, 89, 95, 104, 105, 108)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9),
          "dorian": (0, 2, 3, 5, 7, 9, 10), "blues": (0, 3, 5, 6, 7, 10)}
DRUM_NOTES = {"kick": 36, "snare": 38, "closed_hat": 42, "open_hat": 46, "ride": 51, "clap": 39, "tom": 45}


@dataclass
class DatasetSizes:
    """Clips per category in one split."""

    speech: int
    music: int
    general: int
    mixture: int


# ----------------------------------------------------------------------------------------------------------------
# Speech


def synthesize_speech(rng: np.random.Generator, voices: tuple[str, ...], workdir: Path) -> tuple[np.ndarray, str]:
    """One espeak-ng utterance of 2-4 sentences or number strings, at 16 kHz."""
    voice = str(rng.choice(voices))
    rate = int(rng.integers(110, 230))
    pitch = int(rng.integers(15, 85))
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.35:  # numbers are read in each voice's own language
            parts.append(" ".join(str(int(rng.integers(0, 10_000))) for _ in range(int(rng.integers(2, 6)))) + ".")
        else:
            parts.append(str(rng.choice(SENTENCES)))
    text = " ".join(parts)
    wav = workdir / "speech.wav"
    subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), text],
        check=True, capture_output=True,
    )
    audio, sampling_rate = load_audio(wav)
    return resample(audio[0], sampling_rate, SAMPLING_RATE), f"espeak-ng voice={voice} rate={rate} pitch={pitch}"


# ----------------------------------------------------------------------------------------------------------------
# Music


def random_midi(rng: np.random.Generator, seconds: float) -> tuple[mido.MidiFile, str]:
    """A short piece: chords, a melody and (often) drums, in a random key, scale, tempo and instrumentation."""
    ticks_per_beat = 480
    tempo_bpm = float(rng.uniform(70, 160))
    beats = int(seconds * tempo_bpm / 60)
    scale_name = str(rng.choice(list(SCALES)))
    scale = SCALES[scale_name]
    root = int(rng.integers(48, 60))
    melody_program, chord_program = (int(p) for p in rng.choice(MELODIC_PROGRAMS, size=2))
    with_drums = rng.random() < 0.6
    events = []  # (tick, channel, note, velocity, duration_ticks)

    def degree(index: int, octave: int = 0) -> int:
        return root + 12 * (octave + index // len(scale)) + scale[index % len(scale)]

    for bar_start in range(0, beats, 4):
        chord_root = int(rng.integers(0, len(scale)))
        length = min(4, beats - bar_start) * ticks_per_beat
        for offset in (0, 2, 4):
            velocity = int(rng.integers(45, 80))
            events.append((bar_start * ticks_per_beat, 1, degree(chord_root + offset), velocity, length))
    tick, end = 0, beats * ticks_per_beat
    position = int(rng.integers(0, len(scale)))
    while tick < end:
        duration = int(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 2.0]) * ticks_per_beat)
        position = int(np.clip(position + rng.integers(-3, 4), 0, 2 * len(scale)))
        if rng.random() > 0.15:  # otherwise a rest
            events.append((tick, 0, degree(position, 1), int(rng.integers(60, 115)), min(duration, end - tick)))
        tick += duration
    if with_drums:
        for beat in range(beats):
            beat_tick = beat * ticks_per_beat
            events.append((beat_tick, 9, DRUM_NOTES["closed_hat"], 70, ticks_per_beat // 4))
            events.append((beat_tick + ticks_per_beat // 2, 9, DRUM_NOTES["closed_hat"], 55, ticks_per_beat // 4))
            events.append((beat_tick, 9, DRUM_NOTES["kick" if beat % 2 == 0 else "snare"], 100, ticks_per_beat // 4))
            if rng.random() < 0.15:
                events.append((beat_tick, 9, DRUM_NOTES[str(rng.choice(["tom", "clap", "ride", "open_hat"]))], 80,
                               ticks_per_beat // 4))

    messages = []
    for start, channel, note, velocity, duration in events:
        messages.append((start, 1, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
        messages.append((start + max(duration, 1), 0, mido.Message("note_off", channel=channel, note=note)))
    messages.sort(key=lambda item: (item[0], item[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
    track.append(mido.Message("program_change", channel=0, program=melody_program))
    track.append(mido.Message("program_change", channel=1, program=chord_program))
    previous = 0
    for tick, _, message in messages:
        track.append(message.copy(time=tick - previous))
        previous = tick
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    description = (
        f"FluidR3_GM programs melody={melody_program} chords={chord_program} drums={with_drums} "
        f"{scale_name} root={root} tempo={tempo_bpm:.0f}"
    )
    return midi, description


def synthesize_music(rng: np.random.Generator, seconds: float, workdir: Path) -> tuple[np.ndarray, str]:
    """A random MIDI piece rendered by FluidSynth at 16 kHz, mixed to mono."""
    midi, description = random_midi(rng, seconds)
    midi_path, wav_path = workdir / "piece.mid", workdir / "piece.wav"
    midi.save(str(midi_path))
    subprocess.run(
        [FLUIDSYNTH, "-ni", "-q", "-g", "0.6", "-r", str(SAMPLING_RATE), "-F", str(wav_path), str(SOUNDFONT),
         str(midi_path)],
        check=True, capture_output=True,
    )
    audio, sampling_rate = load_audio(wav_path)
    return resample(audio.mean(axis=0), sampling_rate, SAMPLING_RATE), description


# ----------------------------------------------------------------------------------------------------------------
# General sounds


def _colored_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.maximum(np.fft.rfftfreq(length), 1.0 / length)
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)
    return noise / (np.abs(noise).max() + 1e-9)


def _band_noise(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    low = float(rng.uniform(50, 4000))
    high = float(min(low * rng.uniform(1.3, 6.0), SAMPLING_RATE / 2))
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLING_RATE)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    sweep = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * np.arange(length) / SAMPLING_RATE)
    return np.fft.irfft(spectrum, n=length) * sweep, f"band noise {low:.0f}-{high:.0f} Hz"


def _chirp(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    start, stop = rng.uniform(40, 7000, size=2)
    time = np.arange(length) / SAMPLING_RATE
    duration = length / SAMPLING_RATE
    if rng.random() < 0.5:
        frequency = start + (stop - start) * time / duration
        kind = "linear"
    else:
        frequency = start * (stop / start) ** (time / duration)
        kind = "exponential"
    phase = 2 * np.pi * np.cumsum(frequency) / SAMPLING_RATE
    harmonics = int(rng.integers(1, 4))
    signal = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return signal, f"{kind} chirp {start:.0f}->{stop:.0f} Hz, {harmonics} harmonics"


def _impacts(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    """Struck objects: sums of exponentially decaying modes, at random times."""
    signal = np.zeros(length)
    count = int(rng.integers(2, 10))
    for _ in range(count):
        onset = int(rng.integers(0, length - 1))
        duration = min(length - onset, int(rng.uniform(0.05, 1.2) * SAMPLING_RATE))
        time = np.arange(duration) / SAMPLING_RATE
        fundamental = rng.uniform(80, 3000)
        ratios = np.concatenate([[1.0], rng.uniform(1.2, 6.0, size=int(rng.integers(2, 7)))])
        decay = rng.uniform(3, 40)
        modes = sum(np.exp(-decay * r * time) * np.sin(2 * np.pi * fundamental * r * time + rng.uniform(0, 6.3)) / r
                    for r in ratios)
        click = rng.standard_normal(duration) * np.exp(-time * 300) * rng.uniform(0, 1)
        signal[onset : onset + duration] += rng.uniform(0.2, 1.0) * (modes + click)
    return signal, f"{count} modal impacts"


def _clicks_and_rain(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    density = float(rng.uniform(5, 400))
    impulses = (rng.random(length) < density / SAMPLING_RATE) * rng.standard_normal(length)
    kernel_time = np.arange(int(0.01 * SAMPLING_RATE)) / SAMPLING_RATE
    kernel = np.exp(-kernel_time * rng.uniform(200, 2000)) * np.sin(2 * np.pi * rng.uniform(500, 6000) * kernel_time)
    bed = 0.1 * _colored_noise(rng, length, 1.0) * rng.uniform(0, 1)
    return np.convolve(impulses, kernel)[:length] + bed, f"rain/clicks at {density:.0f} per second"


def _fm_tones(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    time = np.arange(length) / SAMPLING_RATE
    carrier, ratio, index = rng.uniform(100, 2000), rng.choice([0.5, 1, 1.5, 2, 3.5]), rng.uniform(0.5, 8)
    envelope_rate = rng.uniform(0.5, 6)
    envelope = 0.5 * (1 + np.sign(np.sin(2 * np.pi * envelope_rate * time))) * np.exp(
        -((time * envelope_rate) % 1) * rng.uniform(1, 8)
    )
    signal = np.sin(2 * np.pi * carrier * time + index * np.sin(2 * np.pi * carrier * ratio * time))
    return signal * envelope, f"FM tone {carrier:.0f} Hz ratio {ratio} index {index:.1f}"


def _noise_texture(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    exponent = float(rng.choice([0.0, 1.0, 2.0]))
    time = np.arange(length) / SAMPLING_RATE
    gusts = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 2.0) * time + rng.uniform(0, 6.3))
    name = {0.0: "white", 1.0: "pink", 2.0: "brown"}[exponent]
    return _colored_noise(rng, length, exponent) * gusts, f"{name} noise"


GENERAL_SOUNDS: tuple[Callable[[np.random.Generator, int], tuple[np.ndarray, str]], ...] = (
    _band_noise, _chirp, _impacts, _clicks_and_rain, _fm_tones, _noise_texture,
)


def synthesize_general(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, str]:
    """One or two synthesised sound layers."""
    length = int(seconds * SAMPLING_RATE)
    layer_count = int(rng.integers(1, 3))
    layers = [GENERAL_SOUNDS[int(rng.integers(len(GENERAL_SOUNDS)))](rng, length) for _ in range(layer_count)]
    signal = sum(layer / (np.abs(layer).max() + 1e-9) * rng.uniform(0.3, 1.0) for layer, _ in layers)
    return signal.astype(np.float32), " + ".join(description for _, description in layers)


# ----------------------------------------------------------------------------------------------------------------
# Assembly


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    return audio[:length] if len(audio) >= length else np.pad(audio, (0, length - len(audio)))


def _finish(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Loudness between -30 and -14 LUFS, peaks kept below full scale."""
    target_lufs = float(rng.uniform(-30, -14))
    audio, _ = normalize_loudness(np.asarray(audio, dtype=np.float32)[None], SAMPLING_RATE, target_lufs)
    audio = audio[0]
    peak = np.abs(audio).max()
    return (audio / peak * 0.98 if peak > 0.98 else audio).astype(np.float32)


def _flac_record(audio: np.ndarray, name: str) -> dict:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLING_RATE, format="FLAC", subtype="PCM_16")
    return {"bytes": buffer.getvalue(), "path": name}


def make_clip(
    split_name: str, category: str, index: int, seed: int, voices: tuple[str, ...], seconds: tuple[float, float]
) -> tuple[dict, str]:
    """One clip (FLAC record) and its description, from a generator seeded by `(seed, category, index)`."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category), index])
    duration = float(rng.uniform(*seconds))
    length = int(duration * SAMPLING_RATE)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        if category == "speech":
            audio, description = synthesize_speech(rng, voices, workdir)
            audio = audio[: length * 2]  # speech keeps its natural length, up to twice the nominal one
        elif category == "music":
            audio, description = synthesize_music(rng, duration, workdir)
            audio = _fit_length(audio, length)
        elif category == "general":
            audio, description = synthesize_general(rng, duration)
        else:
            speech, speech_description = synthesize_speech(rng, voices, workdir)
            music, music_description = synthesize_music(rng, duration, workdir)
            general, general_description = synthesize_general(rng, duration)
            gains = rng.uniform(0.1, 1.0, size=3)
            audio = sum(
                gain * _fit_length(part, length) / (np.abs(part).max() + 1e-9)
                for gain, part in zip(gains, (speech, music, general))
            )
            description = (
                f"mixture {gains.round(2).tolist()}: {speech_description} | {music_description} | "
                f"{general_description}"
            )
    audio = _finish(audio, rng)
    return _flac_record(audio, f"{split_name}/{category}_{index:05d}.flac"), description


def build_split(
    name: str,
    sizes: DatasetSizes,
    seed: int,
    voices: tuple[str, ...],
    seconds: tuple[float, float],
    num_threads: int = 8,
) -> Dataset:
    """
    All clips of one split. The clips are made in threads (the external synthesizers spend most of their time
    starting up, not computing); each clip depends only on its own seed, so the result does not depend on them.
    """
    plan = [(category, index) for category in CATEGORIES for index in range(getattr(sizes, category))]
    with ThreadPoolExecutor(num_threads) as pool:
        clips = list(
            tqdm(
                pool.map(lambda item: make_clip(name, *item, seed, voices, seconds), plan),
                total=len(plan),
                desc=name,
            )
        )
    rows = {
        "audio": [record for record, _ in clips],
        "category": [category for category, _ in plan],
        "description": [description for _, description in clips],
    }
    return Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=SAMPLING_RATE))


def _write_parquet(dataset: Dataset, folder: Path) -> None:
    """Replace `folder` with one holding the split as parquet, written beside it first."""
    staging = folder.with_name(f".{folder.name}.incomplete")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    dataset.to_parquet(str(staging / "data-00000-of-00001.parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _check_tools() -> None:
    missing = [tool for tool in (ESPEAK, FLUIDSYNTH) if shutil.which(tool) is None]
    if missing or not SOUNDFONT.exists():
        raise ValueError(
            f"Missing {missing or [str(SOUNDFONT)]}: install them with `apt-get install espeak-ng fluidsynth "
            "fluid-soundfont-gm`."
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output_dir", default="data/reference", help="where train/, validation/ and heldout/ are written"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_sizes", type=int, nargs=4, default=[400, 200, 200, 60],
                        metavar=("SPEECH", "MUSIC", "GENERAL", "MIXTURE"), help="training clips per category")
    parser.add_argument("--validation_sizes", type=int, nargs=4, default=[8, 6, 6, 4],
                        metavar=("SPEECH", "MUSIC", "GENERAL", "MIXTURE"), help="validation clips per category")
    parser.add_argument("--heldout_sizes", type=int, nargs=4, default=[16, 16, 12, 4],
                        metavar=("SPEECH", "MUSIC", "GENERAL", "MIXTURE"), help="held-out clips per category")
    parser.add_argument("--min_seconds", type=float, default=3.0)
    parser.add_argument("--max_seconds", type=float, default=6.0)
    parser.add_argument("--num_threads", type=int, default=16, help="clips made at the same time")
    args = parser.parse_args(argv)
    if not 0 < args.min_seconds <= args.max_seconds:
        raise ValueError(f"Need 0 < --min_seconds <= --max_seconds, got {args.min_seconds} and {args.max_seconds}.")
    _check_tools()
    output_dir = Path(args.output_dir)
    seconds = (args.min_seconds, args.max_seconds)
    # Distinct seeds per split: no clip of one split is a clip of another.
    splits = {
        "train": (args.train_sizes, args.seed, TRAINING_VOICES),
        "validation": (args.validation_sizes, args.seed + 500_009, TRAINING_VOICES),
        "heldout": (args.heldout_sizes, args.seed + 1_000_003, HELDOUT_VOICES),
    }
    for split_name, (sizes, seed, voices) in splits.items():
        split = build_split(split_name, DatasetSizes(*sizes), seed, voices, seconds, args.num_threads)
        _write_parquet(split, output_dir / split_name)
        counts = {category: split["category"].count(category) for category in sorted(set(split["category"]))}
        print(f"{output_dir / split_name}: {len(split)} clips {counts}")


if __name__ == "__main__":
    main()
