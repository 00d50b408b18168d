"""`dac encode`, `dac decode`, `dac info`: audio files to `.dac` files and back, and what a `.dac` file holds.

Inputs are files or directories, searched recursively; a directory's tree is mirrored under the output
directory. Every output is planned and checked before any work starts (missing inputs, two inputs writing the
same output, existing outputs without `--overwrite`); then a file that fails is reported by name at the end
without stopping the others, and the exit status is 1 when anything failed.
"""

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS, soundfile_format
from ..audio_datasets import files_under
from . import Command, add_model_argument, load_model, resolve_device

__all__ = ["COMMANDS", "Job", "describe_dac_file", "plan_jobs"]

DAC_SUFFIX = ".dac"
DECODED_FORMATS = ("wav", "flac", "ogg", "mp3")
# Names that read as a file, never as an output directory.
_MEDIA_SUFFIXES = {*AUDIO_EXTENSIONS, DAC_SUFFIX, ".opus", ".m4a", ".aac", ".wma", ".au", ".caf"}
_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class Job:
    """One input file and the output it is written to."""

    source: Path
    target: Path


def _problem_list(lines: list[str]) -> str:
    shown = "\n".join(f"  {line}" for line in lines[:_LISTED_PROBLEMS])
    more = len(lines) - _LISTED_PROBLEMS
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def _check_output_directory(output_path: Path, sources: list[Path], file_output_suffixes: set[str]) -> None:
    """Refuse an output that must be a directory but is an existing file or is named like a media file."""
    if output_path.exists() and not output_path.is_dir():
        raise ValueError(f"output {output_path} is an existing file; the output here must be a directory.")
    if output_path.suffix.lower() not in _MEDIA_SUFFIXES:
        return
    if len(sources) == 1 and sources[0].is_file():
        raise ValueError(
            f"output {output_path} names a {output_path.suffix} file, but this command writes "
            f"{', '.join(sorted(file_output_suffixes))} files; end the name with one of those, or give a directory."
        )
    inputs = f"the input {sources[0]} is a directory, whose files" if len(sources) == 1 else "several inputs"
    raise ValueError(f"output {output_path} reads as a file name, but {inputs} need an output directory.")


def plan_jobs(
    inputs: list[str],
    output: str,
    input_suffixes: Iterable[str],
    output_suffix: str,
    overwrite: bool = False,
    file_output_suffixes: Iterable[str] | None = None,
) -> list[Job]:
    """
    Map `inputs` (files, or directories searched recursively for `input_suffixes`) to outputs ending in
    `output_suffix`. `output` is a directory: a file input goes to `output/<name><output_suffix>`, a directory
    input's files to the same relative paths under `output`. A single file input may instead name its output
    file directly: `output` ending in one of `file_output_suffixes` (default: `output_suffix`). Raises
    ValueError, before anything is written, for a missing input, a directory without matching files, two
    inputs with the same output, an output that is also an input, or outputs that exist when `overwrite` is
    False.
    """
    output_path = Path(output)
    sources = [Path(name) for name in inputs]
    missing = [str(source) for source in sources if not source.exists()]
    if missing:
        raise ValueError("input not found:\n" + _problem_list(missing))

    file_output_suffixes = {suffix.lower() for suffix in (file_output_suffixes or [output_suffix])}
    single_file_target = (
        len(sources) == 1 and sources[0].is_file() and output_path.suffix.lower() in file_output_suffixes
    )
    if single_file_target and output_path.is_dir():
        raise ValueError(f"output {output_path} is a directory, but its name reads as a file; rename it.")
    if not single_file_target:
        _check_output_directory(output_path, sources, file_output_suffixes)
    jobs = []
    for source in sources:
        if single_file_target:
            jobs.append(Job(source, output_path))
        elif source.is_dir():
            files = files_under(source, input_suffixes)
            if not files:
                raise ValueError(f"no {', '.join(sorted(input_suffixes))} files in directory {source}.")
            jobs.extend(Job(file, output_path / file.relative_to(source).with_suffix(output_suffix)) for file in files)
        else:
            jobs.append(Job(source, output_path / source.with_suffix(output_suffix).name))

    by_target: dict[Path, list[Path]] = {}
    for job in jobs:
        by_target.setdefault(job.target.resolve(), []).append(job.source)
    clashes = [
        f"{target}: from {', '.join(map(str, clashing))}" for target, clashing in by_target.items() if len(clashing) > 1
    ]
    if clashes:
        raise ValueError("several inputs would write the same output:\n" + _problem_list(clashes))
    source_paths = {job.source.resolve() for job in jobs}
    overwritten_inputs = [str(job.target) for job in jobs if job.target.resolve() in source_paths]
    if overwritten_inputs:
        raise ValueError("an output would replace an input:\n" + _problem_list(overwritten_inputs))
    existing = [str(job.target) for job in jobs if job.target.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{len(existing)} output(s) already exist; pass --overwrite to replace them:\n" + _problem_list(existing)
        )
    return jobs


def _run_jobs(jobs: list[Job], work: Callable[[Job], None], command: str, show_progress: bool) -> int:
    """
    Run `work` on every job of `dac <command>`, collecting failures; report them by name at the end. Returns
    the exit status.
    """
    from tqdm.auto import tqdm

    done_verb = f"{command.capitalize()}d"  # Encoded, Decoded
    failures = []
    progress = tqdm(jobs, desc=f"{done_verb[:-2]}ing", unit="file", disable=not show_progress, file=sys.stderr)
    for job in progress:
        progress.set_postfix_str(job.source.name, refresh=False)
        try:
            work(job)
        except Exception as error:  # one bad file must not stop a directory run: it is reported below
            failures.append(_failure_line(job.source, error))
    print(f"{done_verb} {len(jobs) - len(failures)} of {len(jobs)} file(s).")
    if failures:
        print(f"dac {command}: {len(failures)} file(s) failed:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in failures), file=sys.stderr)
        return 1
    return 0


def _failure_line(path, error: Exception) -> str:
    """`path: reason`, without repeating the path when the error message already starts with it."""
    if isinstance(error, OSError) and error.strerror:
        message = error.strerror
        if error.filename is not None and str(error.filename) != str(path):  # the output, or a folder on its way
            message = f"{message}: {error.filename}"
    else:
        message = str(error).strip() or type(error).__name__
        message = message.removeprefix(f"{path}: ")
        if not isinstance(error, ValueError):
            message = f"{type(error).__name__}: {message}"
    return f"{path}: {message}"


def _load_model(args: argparse.Namespace):
    device = resolve_device(args.device)
    model = load_model(args.model, show_progress=not args.no_progress)
    try:
        return model.to(device)
    except RuntimeError as error:  # e.g. a device torch knows but this machine lacks
        raise ValueError(f"cannot move the model to --device {args.device}: {error}") from error


def _add_shared_arguments(parser: argparse.ArgumentParser, inputs_help: str, output_help: str) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs_help)
    parser.add_argument("-o", "--output", required=True, help=output_help)
    add_model_argument(parser)
    parser.add_argument(
        "--device", default="auto", help="torch device: cpu, cuda, cuda:1, ... or auto (cuda when available)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    _add_shared_arguments(
        parser,
        inputs_help=f"audio files or directories (searched recursively for {', '.join(AUDIO_EXTENSIONS)})",
        output_help="output directory (the input tree is mirrored in it), or a .dac file for a single input file",
    )
    parser.add_argument(
        "--n-quantizers", type=int, default=None, help="codebooks to keep, from 1 to the model's (default: all)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="windows of a long file encoded together (default: 1)"
    )
    parser.add_argument(
        "--normalize-loudness",
        action="store_true",
        help="normalise to -16 LUFS before encoding, as the official DAC does; decoding restores the loudness",
    )


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    _add_shared_arguments(
        parser,
        inputs_help="`.dac` files or directories (searched recursively for .dac files)",
        output_help="output directory (the input tree is mirrored in it), or an audio file for a single input file",
    )
    parser.add_argument(
        "--format",
        default=None,
        choices=DECODED_FORMATS,
        help="audio format of the outputs (default: wav, or the extension of a single output file)",
    )
    parser.add_argument(
        "--subtype",
        type=str.upper,
        default=None,
        help="sample format of the outputs, as soundfile names it: PCM_16, PCM_24, FLOAT, ... (default: the "
        "format's, 16-bit PCM for wav and flac); FLOAT keeps samples beyond full scale, which PCM clips",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="windows of a long file decoded together (default: 1)"
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}.")


def run_encode(args: argparse.Namespace) -> int:
    _check_batch_size(args.batch_size)
    jobs = plan_jobs(args.inputs, args.output, AUDIO_EXTENSIONS, DAC_SUFFIX, overwrite=args.overwrite)
    model = _load_model(args)
    n_codebooks = model.config.n_codebooks
    if args.n_quantizers is not None and not 1 <= args.n_quantizers <= n_codebooks:
        raise ValueError(f"--n-quantizers must be between 1 and the model's {n_codebooks}, got {args.n_quantizers}.")
    from ..compression import compress_file

    def encode(job: Job) -> None:
        compress_file(
            model,
            job.source,
            job.target,
            n_quantizers=args.n_quantizers,
            normalize_loudness=args.normalize_loudness,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
        )

    return _run_jobs(jobs, encode, "encode", show_progress=not args.no_progress)


def _check_subtype(subtype: str, output_formats: set[str]) -> None:
    import soundfile

    for output_format in sorted(output_formats):
        if not soundfile.check_format(output_format, subtype):
            raise ValueError(
                f"--subtype {subtype} cannot be written to {output_format} files; they take "
                f"{', '.join(soundfile.available_subtypes(output_format))}."
            )


def run_decode(args: argparse.Namespace) -> int:
    _check_batch_size(args.batch_size)
    output_suffix = f".{args.format or DECODED_FORMATS[0]}"
    audio_suffixes = [f".{name}" for name in DECODED_FORMATS]
    jobs = plan_jobs(args.inputs, args.output, [DAC_SUFFIX], output_suffix, args.overwrite, audio_suffixes)
    if args.format and any(job.target.suffix.lower() != output_suffix for job in jobs):
        raise ValueError(f"--format {args.format} contradicts the output file name {args.output}.")
    if args.subtype is not None:
        _check_subtype(args.subtype, {soundfile_format(job.target) for job in jobs})
    model = _load_model(args)
    from ..compression import decompress_file

    def decode(job: Job) -> None:
        decompress_file(
            model,
            job.source,
            job.target,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
            subtype=args.subtype,
        )

    return _run_jobs(jobs, decode, "decode", show_progress=not args.no_progress)


# --- dac info ---------------------------------------------------------------------------------------------------

# The released DAC models all use 1024-entry codebooks; official files do not record it.
_OFFICIAL_CODEBOOK_SIZE = 1024


def describe_dac_file(dac_file) -> dict:
    """
    The metadata of a `DacFile` plus what follows from it: frames, duration, frame rate and bitrate (bits per
    second of one channel). Official files record neither the model's frame rate nor its codebook size: their
    frame rate is the frames stored per second of audio (`frame_rate_as_stored`; unpadded chunks store more
    frames than the model's rate), and their bitrate assumes 1024-entry codebooks.
    """
    metadata = dac_file.metadata
    frames = dac_file.codes.shape[-1]
    duration = metadata.original_length / metadata.sample_rate
    frame_rate = (
        metadata.model_sampling_rate / metadata.hop_length
        if metadata.model_sampling_rate and metadata.hop_length
        else None
    )
    frame_rate_as_stored = frame_rate is None
    if frame_rate_as_stored:  # official files: the frames actually stored per second of audio
        frame_rate = frames / duration if duration else None
    bits_per_frame = metadata.n_codebooks * math.log2(metadata.codebook_size or _OFFICIAL_CODEBOOK_SIZE)
    return {
        **metadata.to_dict(),
        "frames": frames,
        "duration_seconds": duration,
        "frame_rate": frame_rate,
        "bitrate": None if frame_rate is None else bits_per_frame * frame_rate,
        "bitrate_assumes_codebook_size": metadata.codebook_size is None,
        "frame_rate_as_stored": frame_rate_as_stored,
    }


def _format_description(path: str, description: dict) -> str:
    official = description["official_dac_version"]
    if description["official_container"]:
        file_format = f"official descript-audio-codec {official} file (read with the restricted reader)"
    else:
        file_format = f"modeling_dac .dac, format version {description['format_version']}"
        if official:
            file_format += f" (converted from an official descript-audio-codec {official} file)"
    stored = " stored per second of audio" if description["frame_rate_as_stored"] else ""
    frame_rate = f" ({description['frame_rate']:.2f} frames/s{stored})" if description["frame_rate"] else ""
    codebook_size = description["codebook_size"] or "not recorded"
    if description["bitrate"] is None:
        bitrate = "n/a (no audio)"
    else:
        bitrate = f"{description['bitrate'] / 1000:.2f} kbps"
        if description["channels"] > 1:
            bitrate += " per channel"
        if description["frame_rate_as_stored"]:
            bitrate += " as stored"
        if description["bitrate_assumes_codebook_size"]:
            bitrate += f" (assuming {_OFFICIAL_CODEBOOK_SIZE}-entry codebooks, as in the released models)"
    if description["model_sampling_rate"]:
        model = (
            f"{description['model_name'] or 'unnamed'} ({description['model_sampling_rate']} Hz, "
            f"hop {description['hop_length']})"
        )
    else:
        model = "not recorded"
    if description["loudness"] is None:
        loudness = "not normalised"
    else:
        loudness = f"input {description['loudness']:.2f} LUFS (normalised before encoding, restored on decoding)"
    if description["chunk_length"] is None or description["chunk_length"] >= description["frames"]:
        chunking = "one continuous stream"
    else:
        padding = "on" if description["padding"] else "off"
        chunking = f"chunks of {description['chunk_length']} frames, convolution padding {padding}"
    rows = [
        ("format", file_format),
        ("sample rate", f"{description['sample_rate']} Hz"),
        ("duration", f"{description['duration_seconds']:.3f} s ({description['original_length']} samples)"),
        ("channels", description["channels"]),
        ("codebooks", f"{description['n_codebooks']} of size {codebook_size}"),
        ("frames", f"{description['frames']}{frame_rate}"),
        ("bitrate", bitrate),
        ("model", model),
        ("fingerprint", description["config_fingerprint"] or "not recorded"),
        ("loudness", loudness),
        ("encoding", chunking),
    ]
    if description["extra"]:
        rows.append(("extra", json.dumps(description["extra"], sort_keys=True)))
    return "\n".join([path] + [f"  {name + ':':<13}{value}" for name, value in rows])


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".dac files (ours or official DAC 1.0.0 ones)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file instead")


def run_info(args: argparse.Namespace) -> int:
    from ..dac_file import DacFile, is_official_container

    failures = []
    for path in args.files:
        try:
            description = describe_dac_file(DacFile.load(path))
            description["official_container"] = is_official_container(path)
        except (ValueError, OSError) as error:
            failures.append(_failure_line(path, error))
            continue
        print(json.dumps({"path": path, **description}) if args.json else _format_description(path, description))
    if failures:
        print("dac info: cannot read:\n" + "\n".join(f"  {line}" for line in failures), file=sys.stderr)
        return 1
    return 0


COMMANDS = {
    "encode": Command("Compress audio files or directories into .dac files.", add_encode_arguments, run_encode),
    "decode": Command("Decompress .dac files or directories into audio files.", add_decode_arguments, run_decode),
    "info": Command("Describe .dac files: audio, codes, bitrate, model, loudness.", add_info_arguments, run_info),
}
