"""`dac eval`: the paper's metrics for a model on a dataset at several bitrates (see `modeling_dac.evaluation`)."""

import argparse

from . import Command, add_model_argument, load_model, resolve_device

__all__ = ["COMMANDS"]


def _comma_separated_integers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4,9, got {text!r}") from None


def _comma_separated_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--data",
        required=True,
        help="folder of audio files, parquet file or folder, save_to_disk directory, or hub dataset id",
    )
    parser.add_argument("--output", required=True, help="directory for the results, report and plots (resumable)")
    parser.add_argument(
        "--n-quantizers",
        type=_comma_separated_integers,
        default=None,
        help="numbers of codebooks to evaluate, e.g. 1,2,4,9 (default: all codebooks)",
    )
    parser.add_argument(
        "--metrics",
        type=_comma_separated_names,
        default=["mel", "stft", "visqol", "sisdr"],
        help="comma-separated subset of mel,stft,visqol,sisdr (default: all; ViSQOL is by far the slowest)",
    )
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--clip-seconds", type=float, default=None, help="keep the first S seconds of each clip")
    parser.add_argument(
        "--resample-to",
        type=int,
        default=None,
        help="sample rate of the metrics in Hz (default: the model's; the paper's table is at 44100)",
    )
    parser.add_argument(
        "--input-loudness",
        type=float,
        default=None,
        help="normalise each clip to this loudness in LUFS before coding (the paper's test clips are at -16)",
    )
    parser.add_argument(
        "--no-match-loudness",
        action="store_true",
        help="measure reconstructions as decoded, without scaling them to the clip's loudness as the official code",
    )
    parser.add_argument("--device", default="auto", help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--split", default=None, help="dataset split, when the dataset has several")
    parser.add_argument("--dataset-config", default=None, help="hub dataset configuration name")
    parser.add_argument("--audio-column", default=None, help="audio column (default: the first Audio column)")
    parser.add_argument("--streaming", action="store_true", help="stream a hub dataset instead of downloading it")
    parser.add_argument(
        "--spectrogram-clips", type=int, default=3, help="clips to draw spectrograms of (default: 3)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    # Imported here, though used later (reading the data, drawing the plots), so that a missing eval extra is
    # reported before any work.
    import datasets  # noqa: F401
    import matplotlib  # noqa: F401

    from ..evaluation import evaluate_model, validate_metrics
    from ..evaluation_report import render_markdown

    validate_metrics(args.metrics)  # before the model loads

    device = resolve_device(args.device)
    model = load_model(args.model, show_progress=not args.no_progress).to(device)
    if "visqol" in args.metrics:
        print("Note: ViSQOL takes about a second per clip and bitrate; leave it out with --metrics mel,stft,sisdr.")
    report = evaluate_model(
        model,
        args.data,
        args.output,
        n_quantizers_list=args.n_quantizers,
        metrics=args.metrics,
        max_clips=args.max_clips,
        clip_seconds=args.clip_seconds,
        resample_to=args.resample_to,
        input_loudness=args.input_loudness,
        match_loudness=not args.no_match_loudness,
        split=args.split,
        dataset_config=args.dataset_config,
        audio_column=args.audio_column,
        streaming=args.streaming,
        spectrogram_clips=args.spectrogram_clips,
        progress=not args.no_progress,
    )
    print(render_markdown(report))
    print(f"Report, per-clip results and plots in {args.output}")
    return 0


COMMANDS = {
    "eval": Command(
        "Measure mel/STFT distance, ViSQOL and SI-SDR of a model on a dataset at several bitrates.",
        add_arguments,
        run,
        extra="eval",
    )
}
