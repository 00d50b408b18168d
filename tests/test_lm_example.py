"""examples/lm_on_audio_tokens.py end to end: tokenize a synthetic dataset, train a tiny Llama, sample, decode."""

import importlib.util

import numpy as np
import soundfile
import torch

from docs_examples import REPO


def load_example():
    spec = importlib.util.spec_from_file_location("lm_on_audio_tokens", REPO / "examples" / "lm_on_audio_tokens.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_trains_samples_and_writes_wavs(tmp_path):
    example = load_example()
    arguments = ["--output-dir", str(tmp_path), "--clips", "4", "--seconds", "0.3", "--steps", "15", "--samples", "2"]
    soundfile.write(tmp_path / "sample_5_0.wav", np.zeros(320, np.float32), 16000)  # from an earlier, larger run
    result = example.main(arguments)
    assert sorted(tmp_path.glob("sample_*.wav")) == sorted(result["sample_paths"])

    losses = result["losses"]
    assert len(losses) == 15
    assert losses[-1] < losses[0] - 1.0  # it learns: from about ln(vocab) = 5.6 to well below

    codec, bridge = result["codec"], result["bridge"]
    hop, rate = codec.config.hop_length, codec.config.sampling_rate
    assert len(result["generated"]) == 2
    # Constrained sampling writes well-formed audio: strict extraction accepts every sample.
    segments = [bridge.extract_audio_codes(sequence, on_text="error") for sequence in result["generated"]]
    assert all(len(sample) == 1 for sample in segments)
    assert len(result["sample_paths"]) == 2
    for path, (codes,) in zip(result["sample_paths"], segments):
        audio, file_rate = soundfile.read(path, dtype="float32")
        assert file_rate == rate == 16000
        assert audio.shape == (codes.shape[-1] * hop,)
        if codes.shape[-1]:
            with torch.inference_mode():
                expected = codec.decode(audio_codes=codes[None]).audio_values[0, 0].numpy()
            np.testing.assert_allclose(audio, expected, atol=1e-4)  # 16-bit wav
    assert sorted(path.name for path in (tmp_path / "clips").iterdir()) == [f"clip_{i:02d}.wav" for i in range(4)]
