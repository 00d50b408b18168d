"""Data-parallel training of two CPU processes (gloo) matches one process on the same global batch.

`accelerate launch --cpu --num_processes 2` starts a single process (accelerate 1.x launches several CPU processes
only through mpirun); `--multi_gpu --num_processes 2` on a machine without GPUs starts two through torchrun, and
Accelerate runs them on CPU with the gloo backend.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_training_data import write_tone_folder
from test_training_run import read_events, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "training" / "configs" / "tiny.yaml")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    write_tone_folder(tmp_path / "tones", count=8)
    # Without quantizer dropout, the global batch of 4 (2 per process) gives the same losses as one process.
    flags = ["--max_steps", "3", "--save_steps", "3", "--eval_steps", "3", "--sample_steps", "1000",
             "--quantizer_dropout", "0", "--logging_steps", "1"]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(REPO / "training" / "train.py"), "--config", TINY, "--dataset", str(tmp_path / "tones"),
        "--output_dir", str(tmp_path / "two"), *flags,
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Distributed environment: DistributedType.MULTI_CPU" in completed.stderr
    assert "Num processes: 2" in completed.stderr
    train(tmp_path / "tones", tmp_path / "one", *flags)

    checkpoint = tmp_path / "two" / "checkpoint-3"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    two, _, _ = read_events(tmp_path / "two")
    one, _, _ = read_events(tmp_path / "one")
    for tag in ("loss/mel", "loss/discriminator", "loss/generator"):
        # Step 1 sees identical weights and data; later steps differ only by float summation order.
        assert two[tag][1] == pytest.approx(one[tag][1], rel=1e-4), tag
        assert two[tag][3] == pytest.approx(one[tag][3], rel=2e-2), tag
    assert two["validation/mel_distance"][3] == pytest.approx(one["validation/mel_distance"][3], rel=2e-2)
