"""Training throughput: samples per second and the time of one step split into data, generator and discriminator.

    python benchmarks/bench_training.py                                     # tiny recipe, CPU (or the GPU if any)
    python benchmarks/bench_training.py --config training/configs/dac_44khz.yaml --batch_size 2 --steps 3

Runs the real training step (`training.step.DacGanStep`) on synthetic audio written to a temporary folder and read
through the real data pipeline. "generator" is the generator forward plus its losses, backward and update;
"discriminator" is the discriminator update; "data" is the wait for the next batch (with `--num_workers` workers
the loading overlaps the step, as in training).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import soundfile as sf
import torch
from accelerate import Accelerator

from modeling_dac import DacModel
from modeling_dac.atomic import atomic_write_path
from training.config import load_training_arguments
from training.data import DacAudioCropper, DacDatasetSource, build_training_dataloader, load_source
from training.discriminator import DacDiscriminator
from training.step import DacGanStep

REPO = Path(__file__).resolve().parents[1]


def write_audio(folder: Path, sampling_rate: int, count: int = 16, seconds: float = 2.0):
    rng = np.random.default_rng(0)
    time_axis = np.arange(int(seconds * sampling_rate)) / sampling_rate
    for index in range(count):
        tone = 0.2 * np.sin(2 * np.pi * (100 + 50 * index) * time_axis)
        sf.write(folder / f"clip_{index:02d}.wav", (tone + 0.05 * rng.standard_normal(len(tone))).astype(np.float32), sampling_rate)


def benchmark(config: str, batch_size: int | None, steps: int, warmup: int, num_workers: int) -> dict:
    flags = ["--config", config, "--num_workers", str(num_workers)]
    if batch_size is not None:
        flags += ["--batch_size", str(batch_size)]
    model_args, data_args, training_args = load_training_arguments(flags)
    has_gpu = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not has_gpu, mixed_precision=training_args.mixed_precision)
    torch.manual_seed(0)
    generator = DacModel(model_args.generator_config())
    generator.apply_weight_norm()
    sampling_rate = generator.config.sampling_rate
    discriminator = DacDiscriminator(model_args.discriminator_config(sampling_rate))
    optimizers = [
        torch.optim.AdamW(module.parameters(), lr=training_args.learning_rate, betas=tuple(training_args.adam_betas))
        for module in (generator, discriminator)
    ]
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, training_args.lr_decay) for o in optimizers]
    generator, discriminator, optimizer_g, optimizer_d = accelerator.prepare(generator, discriminator, *optimizers)
    gan_step = DacGanStep(
        accelerator, generator, discriminator, optimizer_g, optimizer_d, *schedulers, training_args, sampling_rate,
        measure_time=True,
    )
    hop = accelerator.unwrap_model(generator).config.hop_length
    num_samples = max(1, round(data_args.sample_duration * sampling_rate / hop)) * hop

    with tempfile.TemporaryDirectory() as folder:
        write_audio(Path(folder), sampling_rate, seconds=max(2.0, 4 * data_args.sample_duration))
        records = load_source(DacDatasetSource(folder))
        loader = build_training_dataloader(
            records, DacAudioCropper(sampling_rate, num_samples), seed=0,
            per_process_batch_size=training_args.batch_size, num_workers=num_workers,
        )
        batches = iter(loader)
        timings = {"data": [], "generator": [], "discriminator": [], "step": []}
        for index in range(warmup + steps):
            start = time.perf_counter()
            batch = next(batches)
            audio = batch["audio"].to(accelerator.device)
            data_done = time.perf_counter()
            result = gan_step(audio)
            if has_gpu:
                torch.cuda.synchronize()
            end = time.perf_counter()
            if index >= warmup:
                timings["data"].append(data_done - start)
                timings["generator"].append(result.timings["generator"])
                timings["discriminator"].append(result.timings["discriminator"])
                timings["step"].append(end - start)
    step_seconds = statistics.mean(timings["step"])
    return {
        "config": Path(config).stem,
        "device": torch.cuda.get_device_name() if has_gpu else f"CPU ({torch.get_num_threads()} threads)",
        "batch_size": training_args.batch_size,
        "crop_seconds": num_samples / sampling_rate,
        "num_workers": num_workers,
        "steps": steps,
        "samples_per_second": training_args.batch_size / step_seconds,
        "seconds_per_step": step_seconds,
        **{f"{name}_seconds": statistics.mean(values) for name, values in timings.items() if name != "step"},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "training" / "configs" / "tiny.yaml"))
    parser.add_argument("--batch_size", type=int, default=None, help="Default: the config's.")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--output", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = benchmark(args.config, args.batch_size, args.steps, args.warmup, args.num_workers)
    print(
        "| config | device | batch | crop (s) | samples/s | step (s) | generator (s) | discriminator (s) | data (s) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| {result['config']} | {result['device']} | {result['batch_size']} | {result['crop_seconds']:.3f} "
        f"| {result['samples_per_second']:.2f} | {result['seconds_per_step']:.3f} | {result['generator_seconds']:.3f} "
        f"| {result['discriminator_seconds']:.3f} | {result['data_seconds']:.4f} |"
    )
    if args.output:
        with atomic_write_path(args.output) as temporary:
            temporary.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
