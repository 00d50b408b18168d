"""Times the official `descript-audio-codec` 1.0.0 model for `bench_inference.py`, in its own Python environment.

The official package cannot live in the project's environment (SPEC section 9: its dependencies pull a
torchaudio that does not load against the CPU torch here), so `bench_inference.py --official-python PY` starts
this script with that interpreter (see `scripts/generate_reference_fixtures.py` for how /tmp/official_venv is
built) and drives it over stdin/stdout, one JSON object per line, so that the official runs alternate with ours
in the same benchmark loop. Nothing here imports `modeling_dac`.

Startup: `PY official_worker.py --workdir DIR --threads N [--device cpu]`, where DIR holds
`kwargs.json` (the official `DAC(**kwargs)` arguments) and `weights.safetensors` (the official key layout with
plain `weight`s: weight norm is removed from the official model before loading, so all implementations run
the very same folded weights).

Requests and replies (one line each):
    {"op": "load_audio", "path": P, "dtype": "fp32"|"bf16"}  -> {"ok": true}   P: safetensors with "audio"
    {"op": "encode"} / {"op": "decode"}  -> {"wall": s, "cpu": s, "peak_memory": bytes}
    {"op": "save_outputs", "path": P}   -> {"ok": true}   writes audio_codes and audio_values
    {"op": "quit"}
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STUB_DIR = Path(__file__).resolve().parent.parent / "scripts" / "official_dac_stubs"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def reset_peak_rss() -> int:
    """Resets the process's peak resident set (Linux clear_refs) and returns the current resident bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmRSS")
    except OSError:
        return 0


def _status_bytes(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(STUB_DIR))
    warnings.filterwarnings("ignore")
    import dac

    kwargs = json.loads((args.workdir / "kwargs.json").read_text())
    model = dac.model.DAC(**kwargs)
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    model.load_state_dict(load_file(args.workdir / "weights.safetensors"), strict=True)
    model = model.eval().to(args.device)
    device = torch.device(args.device)
    state = {}

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(function):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = reset_peak_rss()
        synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _status_bytes("VmHWM")
        return {"wall": wall, "cpu": cpu, "peak_memory": max(peak - base, 0)}

    def encode():
        state["encoded"] = model.encode(model.preprocess(state["audio"], kwargs["sample_rate"]))

    def decode():
        state["decoded"] = model.decode(state["encoded"][0])

    print(json.dumps({"ready": True, "dac_version": dac.__version__}), flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "quit":
                break
            if request["op"] == "load_audio":
                dtype = DTYPES[request["dtype"]]
                model.to(dtype)
                state["audio"] = load_file(request["path"])["audio"].to(device, dtype)
                reply = {"ok": True}
            elif request["op"] == "encode":
                reply = timed(encode)
            elif request["op"] == "decode":
                reply = timed(decode)
            elif request["op"] == "save_outputs":
                save_file(
                    {
                        "audio_codes": state["encoded"][1].contiguous().cpu(),
                        "audio_values": state["decoded"].float().contiguous().cpu(),
                    },
                    request["path"],
                )
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown op {request['op']!r}"}
            print(json.dumps(reply), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
