"""Tests for modeling_dac.metrics and the local `evaluate` modules under metrics/.

Reference values from the official implementations (audiotools' MelSpectrogramLoss with DAC's conf/base.yml,
MultiScaleSTFTLoss and SISDRLoss; librosa's mel filters) are in fixtures/metrics/audiotools_reference.npz,
written by fixtures/metrics/generate_audiotools_reference.py.
"""

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_dac import metrics
from modeling_dac.metrics import (
    MEL_N_MELS,
    MEL_WINDOW_LENGTHS,
    DacMelDistance,
    DacStftDistance,
    mel_distance,
    si_sdr,
    slaney_mel_filterbank,
    stft_distance,
)

REPOSITORY = Path(__file__).resolve().parent.parent
REFERENCE = np.load(Path(__file__).parent / "fixtures" / "metrics" / "audiotools_reference.npz")


def white_noise(length: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    shape = (length,) if batch is None else (batch, length)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- Slaney mel filterbank ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [name for name in REFERENCE.files if name.startswith("filterbank_")], ids=lambda name: name[11:]
)
def test_slaney_filterbank_matches_librosa(name):
    _, sampling_rate, n_fft, n_mels = name.split("_")
    ours = slaney_mel_filterbank(int(sampling_rate), int(n_fft), int(n_mels)).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, REFERENCE[name], rtol=1e-6, atol=1e-12)


def test_slaney_filterbank_linear_region_by_hand():
    # Below 1 kHz the Slaney scale is linear, so with fmax = 1000 Hz and 9 filters the 11 edges are 100 Hz
    # apart: filter i is a triangle on [100 i, 100 (i + 2)] Hz peaking at 100 (i + 1) Hz with height
    # 2 / 200 Hz (Slaney area normalisation). With sr 2000 and n_fft 200 the bins are 10 Hz apart.
    filters = slaney_mel_filterbank(2000, 200, 9).double().numpy()
    frequencies = np.arange(101) * 10.0
    for index in range(9):
        centre = 100.0 * (index + 1)
        expected = 0.01 * np.clip(1 - np.abs(frequencies - centre) / 100.0, 0, None)
        np.testing.assert_allclose(filters[index], expected, rtol=1e-6, atol=1e-9)
    assert filters[0, 5] == pytest.approx(0.005, rel=1e-6)  # 50 Hz: halfway up the first filter


def test_slaney_filterbank_log_region_peaks():
    # Above 1 kHz the scale is logarithmic, 27 mels per factor 6.4: from 1000 to 6400 Hz with 26 filters the
    # edges are 1000 * 6.4 ** (k / 27). On a 1 Hz grid each filter peaks at its centre edge with height
    # 2 / (upper edge - lower edge), up to the grid spacing.
    filters = slaney_mel_filterbank(16000, 16000, 26, fmin=1000.0, fmax=6400.0).double().numpy()
    edges = 1000.0 * 6.4 ** (np.arange(28) / 27)
    for index in range(26):
        assert abs(np.argmax(filters[index]) - edges[index + 1]) <= 1.0
        assert filters[index].max() == pytest.approx(2 / (edges[index + 2] - edges[index]), rel=0.02)
    assert (filters[:, :999] == 0).all() and (filters[:, 6401:] == 0).all()


def test_slaney_filterbank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fmin < fmax"):
        slaney_mel_filterbank(16000, 512, 40, fmin=9000.0)
    with pytest.raises(ValueError, match="positive"):
        slaney_mel_filterbank(16000, 0, 40)


# --- Mel and STFT distance against the official implementation ------------------------------------------------------


@pytest.mark.parametrize("sampling_rate", [44100, 16000])
@pytest.mark.parametrize("kind", ["mel", "stft"])
def test_spectral_distances_match_audiotools(kind, sampling_rate):
    reference, estimate = REFERENCE["reference"], REFERENCE["estimate"]
    function = mel_distance if kind == "mel" else stft_distance
    np.testing.assert_allclose(
        function(reference, estimate, sampling_rate), REFERENCE[f"{kind}_items_{sampling_rate}"], rtol=2e-6
    )
    module = DacMelDistance(sampling_rate) if kind == "mel" else DacStftDistance()
    batch_value = module(torch.from_numpy(reference)[:, None], torch.from_numpy(estimate)[:, None])
    assert batch_value.ndim == 0
    assert batch_value.item() == pytest.approx(float(REFERENCE[f"{kind}_batch_{sampling_rate}"]), rel=2e-6)


def test_mel_distance_defaults_are_the_papers():
    module = DacMelDistance(44100)
    assert module.window_lengths == MEL_WINDOW_LENGTHS == (32, 64, 128, 256, 512, 1024, 2048)
    assert module.n_mels == MEL_N_MELS == (5, 10, 20, 40, 80, 160, 320)
    assert (module.clamp_eps, module.power, module.log_weight, module.magnitude_weight) == (1e-5, 1.0, 1.0, 0.0)
    stft_module = DacStftDistance()
    assert stft_module.window_lengths == (2048, 512)
    assert (stft_module.clamp_eps, stft_module.power, stft_module.log_weight, stft_module.magnitude_weight) == (
        1e-5,
        2.0,
        1.0,
        1.0,
    )


# --- Known values ----------------------------------------------------------------------------------------------------


def test_identical_signals():
    audio = white_noise(8000)
    assert mel_distance(audio, audio, 16000) == 0.0
    assert stft_distance(audio, audio, 16000) == 0.0
    assert si_sdr(audio, audio, 16000) > 100.0


@pytest.mark.parametrize("gain", [0.5, 3.0])
def test_gain_shifts_every_log_mel_bin_by_log10_gain(gain):
    # mel(g x) = g mel(x) (the STFT magnitude and the filters are linear), so where no bin is clamped every
    # log10 difference is log10 g, each scale's mean is |log10 g| and the sum over 7 scales is 7 |log10 g|.
    audio = 100.0 * white_noise(8820)
    module = DacMelDistance(44100)
    smallest_bin = min(spectrogram.min().item() for spectrogram in module.spectrograms(torch.from_numpy(audio)[None]))
    assert smallest_bin * min(gain, 1.0) > module.clamp_eps, "precondition: no mel bin may be clamped"
    expected = len(MEL_WINDOW_LENGTHS) * abs(math.log10(gain))
    assert mel_distance(audio, gain * audio, 44100) == pytest.approx(expected, rel=1e-4)
    assert mel_distance(gain * audio, audio, 44100) == pytest.approx(expected, rel=1e-4)


def test_gain_in_stft_distance():
    # log term: |log10((g |X|)^2) - log10(|X|^2)| = 2 |log10 g| per bin; magnitude term: |g - 1| |X|.
    gain = 2.0
    audio = white_noise(8820)
    module = DacStftDistance()
    magnitudes = module.spectrograms(torch.from_numpy(audio)[None])
    assert min(magnitude.min().item() for magnitude in magnitudes) > module.clamp_eps
    expected = sum(2 * abs(math.log10(gain)) + abs(gain - 1) * magnitude.mean().item() for magnitude in magnitudes)
    assert stft_distance(audio, gain * audio, 44100) == pytest.approx(expected, rel=1e-5)


def test_si_sdr_is_gain_invariant():
    reference = white_noise(16000, seed=1)
    estimate = reference + 0.3 * white_noise(16000, seed=2)
    value = si_sdr(reference, estimate, 16000)
    for gain in (0.01, 0.5, 7.0):
        assert si_sdr(reference, gain * estimate, 16000) == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_si_sdr_of_additive_white_noise_is_the_snr(snr_db):
    reference = white_noise(48000, seed=3).astype(np.float64)
    noise = white_noise(48000, seed=4).astype(np.float64)
    noise *= math.sqrt(np.mean(reference**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    assert si_sdr(reference, reference + noise, 48000) == pytest.approx(snr_db, abs=0.2)


def test_si_sdr_of_a_delayed_sine():
    # A 1 kHz sine at 48 kHz delayed by d samples is sin(wt - phi), phi = 2 pi 1000 d / 48000. Over whole periods
    # its projection on the reference keeps cos(phi), the rest is sin(phi): SI-SDR = 20 log10 |cot(phi)|.
    time = np.arange(48000) / 48000
    sine = np.sin(2 * np.pi * 1000 * time)
    for delay in (2, 6, 9):
        phase = 2 * np.pi * 1000 * delay / 48000
        expected = 20 * math.log10(abs(1 / math.tan(phase)))
        assert si_sdr(sine, np.roll(sine, delay), 48000) == pytest.approx(expected, abs=1e-6)


def test_spectrogram_frames_are_centred_with_hop_quarter_window():
    # Delaying by a multiple of every hop (512 = 2048 / 4) moves frame m to frame m + 512 / hop; interior
    # frames (away from the reflect padding and the wrap-around of np.roll) must then be identical.
    audio = white_noise(16384, seed=5)
    delay = 512
    module = DacMelDistance(44100)
    original = module.spectrograms(torch.from_numpy(audio)[None])
    delayed = module.spectrograms(torch.from_numpy(np.roll(audio, delay))[None])
    for window_length, before, after in zip(module.window_lengths, original, delayed):
        hop = window_length // 4
        shift = delay // hop
        first, last = window_length // hop + shift, before.shape[-1] - window_length // hop
        torch.testing.assert_close(after[..., first:last], before[..., first - shift : last - shift])
    assert before.shape[-1] == 16384 // 512 + 1


def test_si_sdr_matches_torchmetrics_and_audiotools():
    torchmetrics_functional = pytest.importorskip("torchmetrics.functional.audio")
    reference = torch.from_numpy(white_noise(4000, seed=6, batch=3)).double()
    estimate = 0.7 * reference + 0.2 * torch.from_numpy(white_noise(4000, seed=7, batch=3)).double() + 0.1
    expected = torchmetrics_functional.scale_invariant_signal_distortion_ratio(estimate, reference, zero_mean=True)
    np.testing.assert_allclose(si_sdr(reference, estimate, 16000), expected.numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        si_sdr(REFERENCE["reference"], REFERENCE["estimate"], 44100), REFERENCE["sisdr_items"], rtol=1e-5
    )


# --- Input handling --------------------------------------------------------------------------------------------------


def test_per_item_results_for_batches():
    reference = white_noise(4000, seed=8, batch=3)
    estimate = reference + 0.1 * white_noise(4000, seed=9, batch=3)
    for function in (mel_distance, stft_distance, si_sdr):
        batched = function(reference, estimate, 16000)
        assert isinstance(batched, np.ndarray) and batched.shape == (3,)
        singles = [function(reference[i], estimate[i], 16000) for i in range(3)]
        assert all(isinstance(value, float) for value in singles)
        np.testing.assert_allclose(batched, singles, rtol=1e-5)
        with_channel = function(torch.from_numpy(reference)[:, None], torch.from_numpy(estimate)[:, None], 16000)
        np.testing.assert_allclose(with_channel, batched, rtol=1e-6)


@pytest.mark.parametrize("function", [mel_distance, stft_distance, si_sdr])
def test_invalid_inputs_raise_value_error(function):
    audio = white_noise(4000)
    with pytest.raises(ValueError, match="same shape"):
        function(audio, audio[:-1], 16000)
    with pytest.raises(ValueError, match="floating-point"):
        function((audio * 1000).astype(np.int16), (audio * 1000).astype(np.int16), 16000)
    with pytest.raises(ValueError, match="sampling_rate"):
        function(audio, audio, 0)
    with pytest.raises(ValueError, match=r"\[T\], \[B, T\] or \[B, 1, T\]"):
        function(audio.reshape(2, 2, 1000), audio.reshape(2, 2, 1000), 16000)


def test_spectral_distances_need_more_than_half_the_longest_window():
    audio = white_noise(1025)
    assert mel_distance(audio, 0.5 * audio, 16000) > 0
    with pytest.raises(ValueError, match="at least 1025 samples"):
        mel_distance(audio[:1024], audio[:1024], 16000)


# --- Modules for the training loss -----------------------------------------------------------------------------------


def test_modules_are_differentiable():
    module = DacMelDistance(16000, window_lengths=(16, 32), n_mels=(3, 5)).double()
    reference = torch.from_numpy(white_noise(48, seed=10, batch=2)).double()
    estimate = (reference + 0.3 * torch.from_numpy(white_noise(48, seed=11, batch=2)).double()).requires_grad_()
    assert torch.autograd.gradcheck(lambda audio: module(reference, audio), (estimate,), fast_mode=True)
    stft_module = DacStftDistance(window_lengths=(32, 16)).double()
    assert torch.autograd.gradcheck(lambda audio: stft_module(reference, audio), (estimate,), fast_mode=True)


def test_module_buffers_and_reduction():
    module = DacMelDistance(24000)
    assert module.state_dict() == {}  # windows and filters are rebuilt, never saved with a model
    assert module.mel_filters_6.shape == (320, 1025) and module.window_0.shape == (32,)
    reference = torch.from_numpy(white_noise(3000, seed=12, batch=2))
    estimate = reference * torch.tensor([[0.5], [2.0]])
    per_item = DacMelDistance(24000, reduction="none")(reference, estimate)
    assert per_item.shape == (2,)
    assert module(reference, estimate).item() == pytest.approx(per_item.mean().item(), rel=1e-6)
    # Multi-channel items: the mean runs over channels too.
    stereo = torch.stack([reference, estimate], dim=1)
    assert module(stereo, stereo.flip(1)).item() == pytest.approx(per_item.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        DacStftDistance(reduction="sum")
    with pytest.raises(ValueError, match="one entry per window length"):
        DacMelDistance(16000, n_mels=(5, 10))


# --- Optional perceptual metrics -------------------------------------------------------------------------------------


def speech_like(sampling_rate: int, seconds: float = 1.0) -> np.ndarray:
    time = np.arange(int(sampling_rate * seconds)) / sampling_rate
    partials = ((150, 0.3), (300, 0.2), (1200, 0.1), (2500, 0.05))
    voiced = sum(amplitude * np.sin(2 * np.pi * frequency * time) for frequency, amplitude in partials)
    return voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * time)) ** 2


@pytest.mark.parametrize(
    "name, module_name, options, lowest, highest, margin",
    [
        ("visqol", "visqol", {"mode": "audio"}, 4.5, 5.0, 0.5),
        ("visqol", "visqol", {"mode": "speech"}, 4.5, 5.0, 0.5),
        ("pesq", "pesq", {"mode": "wb"}, 4.5, 4.65, 0.5),
        ("stoi", "pystoi", {}, 0.999, 1.0 + 1e-9, 0.05),
    ],
)
def test_perceptual_metrics_rank_clean_above_noisy(name, module_name, options, lowest, highest, margin):
    pytest.importorskip(module_name, reason=f"optional package for {name} not installed")
    function = getattr(metrics, name)
    clean = speech_like(16000)
    noisy = clean + 0.05 * np.random.default_rng(13).standard_normal(clean.shape)
    scores = function(np.stack([clean, clean]), np.stack([clean, noisy]), 16000, **options)
    assert scores.shape == (2,)
    assert lowest <= scores[0] <= highest
    assert scores[1] < scores[0] - margin


def test_visqol_resamples_to_48k():
    pytest.importorskip("visqol", reason="visqol-python not installed")
    clean = speech_like(16000)
    noisy = clean + 0.05 * np.random.default_rng(14).standard_normal(clean.shape)
    import soxr

    at_48k = metrics.visqol(soxr.resample(clean, 16000, 48000), soxr.resample(noisy, 16000, 48000), 48000)
    assert metrics.visqol(clean, noisy, 16000) == pytest.approx(at_48k, abs=1e-9)


@pytest.mark.parametrize("name, package", [("visqol", "visqol-python"), ("pesq", "pesq"), ("stoi", "pystoi")])
def test_missing_optional_package_names_the_extra(monkeypatch, name, package):
    module_name = {"visqol": "visqol", "pesq": "pesq", "stoi": "pystoi"}[name]
    monkeypatch.setitem(sys.modules, module_name, None)
    metrics._visqol_api.cache_clear()
    audio = speech_like(16000)
    with pytest.raises(ImportError, match=rf"`{package}`.*modeling_dac\[eval\]"):
        getattr(metrics, name)(audio, audio, 16000)
    metrics._visqol_api.cache_clear()


def test_a_visqol_module_other_than_visqol_python_is_named(monkeypatch):
    impostor = types.ModuleType("visqol")  # as Google's own bindings: same import name, no VisqolApi
    impostor.__file__ = "/site-packages/visqol/__init__.py"
    monkeypatch.setitem(sys.modules, "visqol", impostor)
    metrics._visqol_api.cache_clear()
    audio = speech_like(16000)
    with pytest.raises(ImportError, match="/site-packages/visqol/__init__.py\\) is not visqol-python"):
        metrics.visqol(audio, audio, 16000)
    metrics._visqol_api.cache_clear()


# --- Local `evaluate` modules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, required_module",
    [
        ("mel_distance", {}, None),
        ("stft_distance", {}, None),
        ("si_sdr", {}, None),
        ("visqol", {"mode": "audio"}, "visqol"),
        ("pesq", {"mode": "wb"}, "pesq"),
        ("stoi", {"extended": True}, "pystoi"),
    ],
)
def test_evaluate_module_matches_function(name, options, required_module, tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    if required_module is not None:
        pytest.importorskip(required_module, reason=f"optional package for {name} not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(REPOSITORY)
    metric = evaluate.load(f"metrics/{name}", cache_dir=str(tmp_path))
    clean = speech_like(16000, seconds=1.5).astype(np.float32)
    references = [clean, clean[:20000]]  # different lengths; ViSQOL needs more than about 1 s
    predictions = [clean + 0.02 * np.sin(np.arange(len(clean)) * 0.3).astype(np.float32), 0.8 * clean[:20000]]
    result = metric.compute(predictions=predictions, references=references, sampling_rate=16000, **options)
    function = getattr(metrics, name)
    expected = np.mean([function(ref, pred, 16000, **options) for ref, pred in zip(references, predictions)])
    assert set(result) == {name}
    assert result[name] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="sampling_rate"):
        metric.compute(predictions=predictions, references=references)
