"""`dac tokenize`: a dataset's audio column to DAC codes, saved with `save_to_disk` (and pushed to the hub).

Run it under `accelerate launch` to use several processes or GPUs: each process takes its shard with
`datasets.distributed.split_dataset_by_node`, encodes it on its own device and saves it; the main process then
concatenates the shards in rank order into the output directory (docs/tokenize.md). A record that cannot be read
is left out with a warning and listed at the end, as `dac encode` and `dac eval` carry on past bad files; the
exit status is 1 only when every record was left out.
"""

import argparse
import shutil
import sys
from pathlib import Path

from . import Command, add_model_argument, load_model

__all__ = ["COMMANDS"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", help="folder of audio files, parquet file or folder, save_to_disk directory, or hub dataset id"
    )
    parser.add_argument("output_dir", help="new directory for the tokenized dataset (datasets.load_from_disk reads it)")
    add_model_argument(parser)
    parser.add_argument("--split", default=None, help="dataset split, when the dataset has several")
    parser.add_argument("--dataset-config", default=None, help="hub dataset configuration name")
    parser.add_argument("--audio-column", default=None, help="audio column (default: the first Audio column)")
    parser.add_argument("--n-quantizers", type=int, default=None, help="codebooks to keep (default: all)")
    parser.add_argument(
        "--stereo",
        choices=("mean", "first", "fold"),
        default="mean",
        help="multichannel audio: average the channels (default), keep the first, or code each one "
        "(codes [channels, n_quantizers, frames])",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="clips per encoder batch (default: 16)")
    parser.add_argument("--keep-audio", action="store_true", help="keep the undecoded audio column")
    parser.add_argument("--streaming", action="store_true", help="stream the source instead of downloading it")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None, help="also push the result to this hub repo")
    parser.add_argument("--private", action="store_true", help="make the pushed hub repo private")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="run on CPU even when GPUs are present; with `accelerate launch --multi_gpu --num_processes N` it "
        "gives N CPU processes (also set by ACCELERATE_USE_CPU=1)",
    )


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env
    from datasets import Dataset
    from datasets.distributed import split_dataset_by_node

    from ..audio_datasets import load_audio_dataset
    from ..tokenization import (
        check_new_output_dir,
        merge_tokenized_shards,
        remove_interrupted_saves,
        save_tokenized_dataset,
        tokenize_dataset,
    )

    output_dir = Path(args.output_dir)
    check_new_output_dir(output_dir)  # before any work
    # Scratch space beside the output: the codes' Arrow cache and, with several processes, their saved shards.
    # Never the source's folder, which may be read-only.
    work_dir = output_dir.with_name(f".{output_dir.name}.shards")
    state = PartialState(cpu=args.cpu or parse_flag_from_env("ACCELERATE_USE_CPU"))
    with state.main_process_first():  # one process downloads, the others then read the cache
        if state.is_main_process:  # what an earlier run that failed or was killed left
            shutil.rmtree(work_dir, ignore_errors=True)
            remove_interrupted_saves(output_dir)
        dataset = load_audio_dataset(
            args.source,
            split=args.split,
            name=args.dataset_config,
            column=args.audio_column,
            streaming=args.streaming,
            keep_columns=True,
        )
        model = load_model(args.model)
    if state.num_processes > 1:
        if isinstance(dataset, Dataset) and len(dataset) < state.num_processes:
            advice = f"; launch at most {len(dataset)}" if len(dataset) else ""
            raise ValueError(
                f"{args.source} has {len(dataset)} row(s), fewer than the {state.num_processes} processes: every "
                f"process needs at least one{advice}"
            )
        dataset = split_dataset_by_node(dataset, rank=state.process_index, world_size=state.num_processes)
    cache_file_name, skipped = None, []
    if isinstance(dataset, Dataset):
        (work_dir / "cache").mkdir(parents=True, exist_ok=True)
        cache_file_name = work_dir / "cache" / f"codes-{state.process_index:05d}.arrow"
    tokenized = tokenize_dataset(
        dataset,
        model,
        n_quantizers=args.n_quantizers,
        stereo=args.stereo,
        batch_size=args.batch_size,
        keep_audio=args.keep_audio,
        device=state.device,
        cache_file_name=cache_file_name,
        skipped=skipped,
    )

    if state.num_processes == 1:
        result = save_tokenized_dataset(tokenized, output_dir)
    else:
        shard_dirs = [work_dir / f"{rank:05d}-of-{state.num_processes:05d}" for rank in range(state.num_processes)]
        save_tokenized_dataset(tokenized, shard_dirs[state.process_index])
        state.wait_for_everyone()
        result = merge_tokenized_shards(shard_dirs, output_dir) if state.is_main_process else None
        state.wait_for_everyone()
    skipped = gather_object(skipped)  # every process's, in rank order (a streaming shard is read while saved)
    if not state.is_main_process:
        return 0
    shutil.rmtree(work_dir, ignore_errors=True)

    if skipped:
        print(f"dac tokenize: skipped {len(skipped)} record(s) that could not be read:", file=sys.stderr)
        print("\n".join(f"  {record['name']}: {record['reason']}" for record in skipped), file=sys.stderr)
        if not len(result):
            shutil.rmtree(output_dir)  # an empty dataset, which would only block the next run
            raise ValueError(f"nothing in {args.source} could be tokenized; {output_dir} was not written.")
    seconds = sum(result["n_frames"]) / model.config.frame_rate
    print(
        f"Tokenized {len(result)} clip(s) ({seconds:.1f} s = {seconds / 3600:.3f} h of audio) with "
        f"{state.num_processes} process(es) -> {output_dir}: columns {result.column_names}"
        + (f"; skipped {len(skipped)} unreadable record(s), listed above" if skipped else "")
    )
    if args.push_to_hub:
        result.push_to_hub(args.push_to_hub, private=args.private or None)
        print(f"Pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    return 0


COMMANDS = {
    "tokenize": Command(
        "Encode the audio column of a dataset into DAC codes for language models (accelerate launch for several "
        "processes or GPUs).",
        add_arguments,
        run,
        extra="training",
    )
}
