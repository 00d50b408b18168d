"""Objective audio-quality metrics for codec evaluation, and the spectral distances the training loss reuses.

The mel and STFT distances reproduce the definitions of the official DAC code (``MelSpectrogramLoss`` and
``MultiScaleSTFTLoss`` of ``descript-audiotools``, with the parameters of DAC's ``conf/base.yml``), so that
their values are comparable with the paper's table. They are differentiable ``nn.Module``s
(:class:`DacMelDistance`, :class:`DacStftDistance`) and plain functions (:func:`mel_distance`,
:func:`stft_distance`). :func:`si_sdr` is the zero-mean scale-invariant SDR. :func:`visqol`, :func:`pesq` and
:func:`stoi` wrap the optional packages ``visqol-python``, ``pesq`` and ``pystoi`` (``pip install
"modeling_dac[eval]"``).

Every function takes ``(reference, estimate, sampling_rate)``: numpy arrays or torch tensors of shape ``[T]``
(returns a ``float``) or ``[B, T]`` / ``[B, 1, T]`` (returns a float64 ``np.ndarray`` of shape ``[B]``, one value
per item).
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import soxr
import torch
from torch import nn
from transformers.audio_utils import hertz_to_mel, mel_filter_bank, mel_to_hertz

from .validation import check_positive_integer

__all__ = [
    "MEL_N_MELS",
    "MEL_WINDOW_LENGTHS",
    "STFT_WINDOW_LENGTHS",
    "DacMelDistance",
    "DacStftDistance",
    "mel_distance",
    "pesq",
    "require_visqol",
    "si_sdr",
    "slaney_mel_filterbank",
    "stft_distance",
    "stoi",
    "visqol",
]

MEL_WINDOW_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_N_MELS = (5, 10, 20, 40, 80, 160, 320)
STFT_WINDOW_LENGTHS = (2048, 512)

VISQOL_SAMPLING_RATES = {"audio": 48000, "speech": 16000}
PESQ_SAMPLING_RATE = 16000

def slaney_mel_filterbank(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular mel filters on the Slaney mel scale with Slaney area normalisation.

    The same matrix as ``librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``
    (``htk=False, norm="slaney"``), which ``audiotools`` uses: ``n_mels + 2`` edge frequencies evenly spaced in
    mel between ``fmin`` and ``fmax``; filter ``i`` rises linearly from edge ``i`` to 1 at edge ``i + 1`` and
    falls back to 0 at edge ``i + 2``, then is scaled by ``2 / (edge[i + 2] - edge[i])`` (Hz).

    Returns:
        `torch.FloatTensor` of shape `(n_mels, n_fft // 2 + 1)`.
    """
    if sampling_rate <= 0 or n_fft <= 0 or n_mels <= 0:
        raise ValueError(
            f"sampling_rate, n_fft and n_mels must be positive, got {sampling_rate}, {n_fft} and {n_mels}."
        )
    fmax = sampling_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax:
        raise ValueError(f"Mel filterbank needs 0 <= fmin < fmax, got fmin={fmin} and fmax={fmax}.")
    with warnings.catch_warnings():  # the narrow scales (32-point windows) have empty filters, as in the original
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        triangles = mel_filter_bank(
            n_fft // 2 + 1, n_mels, float(fmin), float(fmax), sampling_rate, norm=None, mel_scale="slaney"
        ).T
    edges_hz = mel_to_hertz(
        np.linspace(hertz_to_mel(float(fmin), "slaney"), hertz_to_mel(float(fmax), "slaney"), n_mels + 2), "slaney"
    )
    area_normalisation = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    # librosa stores the triangles in float32 before scaling them in float64 (transformers' norm="slaney" scales
    # them in float64); rounding the same way keeps the matrix bit-identical to the one the official metric used.
    filters = triangles.astype(np.float32).astype(np.float64) * area_normalisation[:, None]
    # Contiguous, as the hand-written filters were: the layout sets the summation order of the loss's gradient.
    return torch.from_numpy(np.ascontiguousarray(filters, dtype=np.float32))


def _hann_window(window_length: int) -> torch.Tensor:
    # Periodic Hann computed in float64 and rounded once, as scipy.signal.get_window("hann") + .float() does.
    return torch.hann_window(window_length, periodic=True, dtype=torch.float64).to(torch.float32)


def _as_batch_channel_time(audio: torch.Tensor, name: str) -> torch.Tensor:
    if audio.ndim == 2:
        return audio[:, None, :]
    if audio.ndim == 3:
        return audio
    raise ValueError(f"{name} must have shape [batch, time] or [batch, channels, time], got {tuple(audio.shape)}.")


class DacStftDistance(nn.Module):
    """Multi-scale log-magnitude STFT distance (``MultiScaleSTFTLoss`` of ``audiotools``, as logged by DAC).

    For each window length ``w``: the magnitude ``|X|`` of a centred STFT (``torch.stft``, ``center=True``,
    reflect padding of ``w // 2``, periodic Hann window of length ``w``, ``n_fft = w``, hop ``w // 4``), then
    ``log_weight * mean|log10(clamp(|X_est|, clamp_eps) ** power) - log10(clamp(|X_ref|, clamp_eps) ** power)|
    + magnitude_weight * mean||X_est| - |X_ref||``, summed over the window lengths. The means run over
    channels, frequency bins and frames (and, with ``reduction="mean"``, over the batch).

    Args:
        window_lengths: STFT window lengths in samples.
        clamp_eps: Lower bound on the magnitude before the log.
        power: Exponent applied to the clamped magnitude before the log.
        log_weight: Weight of the log-magnitude L1 term.
        magnitude_weight: Weight of the linear-magnitude L1 term.
        reduction: ``"mean"`` returns a scalar (the mean over the batch), ``"none"`` one value per item.
    """

    def __init__(
        self,
        window_lengths: Sequence[int] = STFT_WINDOW_LENGTHS,
        clamp_eps: float = 1e-5,
        power: float = 2.0,
        log_weight: float = 1.0,
        magnitude_weight: float = 1.0,
        reduction: str = "mean",
    ):
        super().__init__()
        if not window_lengths or any(length < 4 for length in window_lengths):
            raise ValueError(f"window_lengths must be a non-empty list of lengths >= 4, got {window_lengths}.")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
        if clamp_eps <= 0:
            raise ValueError(f"clamp_eps must be positive so that the log is finite, got {clamp_eps}.")
        self.window_lengths = tuple(int(length) for length in window_lengths)
        self.clamp_eps = clamp_eps
        self.power = power
        self.log_weight = log_weight
        self.magnitude_weight = magnitude_weight
        self.reduction = reduction
        for index, window_length in enumerate(self.window_lengths):
            self.register_buffer(f"window_{index}", _hann_window(window_length), persistent=False)

    @property
    def minimum_length(self) -> int:
        """Fewest samples a signal needs: reflect padding by ``w // 2`` requires more than ``w // 2`` samples."""
        return max(self.window_lengths) // 2 + 1

    def spectrograms(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """Magnitude spectrograms, one per window length.

        Args:
            audio (`torch.FloatTensor` of shape `(batch_size, time)`):
                Mono signals (fold channels into the batch first).

        Returns:
            List of `torch.FloatTensor` of shape `(batch_size, window_length // 2 + 1, frames)`, with
            `frames = time // (window_length // 4) + 1`.
        """
        magnitudes = []
        for index, window_length in enumerate(self.window_lengths):
            window = getattr(self, f"window_{index}").to(device=audio.device, dtype=audio.dtype)
            spectrum = torch.stft(
                audio,
                n_fft=window_length,
                hop_length=window_length // 4,
                window=window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            magnitudes.append(spectrum.abs())
        return magnitudes

    def forward(self, reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        """
        Args:
            reference (`torch.FloatTensor` of shape `(batch_size, time)` or `(batch_size, channels, time)`):
                Original audio.
            estimate (`torch.FloatTensor` of the same shape as `reference`):
                Reconstructed audio; gradients flow through it (and through `reference` if it requires them).

        Returns:
            `torch.FloatTensor`: a scalar with `reduction="mean"`, else of shape `(batch_size,)`.
        """
        if reference.shape != estimate.shape:
            raise ValueError(
                f"reference and estimate must have the same shape, got {tuple(reference.shape)} and "
                f"{tuple(estimate.shape)}; trim or pad the reconstruction to the original length first."
            )
        reference = _as_batch_channel_time(reference, "reference")
        estimate = _as_batch_channel_time(estimate, "estimate")
        batch_size, channels, length = reference.shape
        if length < self.minimum_length:
            raise ValueError(
                f"Signals of {length} samples are too short for a window of {max(self.window_lengths)} samples: "
                f"the centred STFT needs at least {self.minimum_length} samples."
            )
        reference_spectrograms = self.spectrograms(reference.reshape(batch_size * channels, length))
        estimate_spectrograms = self.spectrograms(estimate.reshape(batch_size * channels, length))
        per_item = sum(
            self._per_item_distance(reference_spectrogram, estimate_spectrogram, batch_size)
            for reference_spectrogram, estimate_spectrogram in zip(reference_spectrograms, estimate_spectrograms)
        )
        return per_item.mean() if self.reduction == "mean" else per_item

    def log_magnitude(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """`log10(clamp(spectrogram, clamp_eps) ** power)`: what the log term compares, bin by bin."""
        return spectrogram.clamp(min=self.clamp_eps).pow(self.power).log10()

    def _per_item_distance(self, reference: torch.Tensor, estimate: torch.Tensor, batch_size: int) -> torch.Tensor:
        log_reference = self.log_magnitude(reference)
        log_estimate = self.log_magnitude(estimate)
        distance = self.log_weight * (log_estimate - log_reference).abs().reshape(batch_size, -1).mean(dim=1)
        if self.magnitude_weight:
            distance = distance + self.magnitude_weight * (estimate - reference).abs().reshape(batch_size, -1).mean(
                dim=1
            )
        return distance


class DacMelDistance(DacStftDistance):
    """Multi-scale log-mel distance: DAC's mel reconstruction loss and the paper's "mel distance".

    ``MelSpectrogramLoss`` of ``audiotools`` with DAC's ``conf/base.yml`` parameters: for each pair
    ``(w, n)`` of ``window_lengths`` and ``n_mels``, the STFT magnitude of :class:`DacStftDistance` (window
    ``w``, hop ``w // 4``) projected on ``n`` Slaney mel filters (:func:`slaney_mel_filterbank`, ``fmin`` to
    ``fmax``), then ``mean|log10(clamp(mel_est, 1e-5)) - log10(clamp(mel_ref, 1e-5))|``, summed over the 7
    scales.

    Args:
        sampling_rate: Sampling rate of the signals in Hz (places the mel filters).
        window_lengths: STFT window lengths in samples, one per scale.
        n_mels: Number of mel filters, one per scale.
        mel_fmin: Lowest filter edge in Hz.
        mel_fmax: Highest filter edge in Hz; ``None`` for the Nyquist frequency.
        clamp_eps, power, log_weight, magnitude_weight, reduction: as in :class:`DacStftDistance`, applied to
            the mel spectrograms (``power=1`` and ``magnitude_weight=0`` in DAC).
    """

    def __init__(
        self,
        sampling_rate: int,
        window_lengths: Sequence[int] = MEL_WINDOW_LENGTHS,
        n_mels: Sequence[int] = MEL_N_MELS,
        mel_fmin: float = 0.0,
        mel_fmax: float | None = None,
        clamp_eps: float = 1e-5,
        power: float = 1.0,
        log_weight: float = 1.0,
        magnitude_weight: float = 0.0,
        reduction: str = "mean",
    ):
        super().__init__(
            window_lengths=window_lengths,
            clamp_eps=clamp_eps,
            power=power,
            log_weight=log_weight,
            magnitude_weight=magnitude_weight,
            reduction=reduction,
        )
        if len(n_mels) != len(self.window_lengths):
            raise ValueError(
                f"n_mels needs one entry per window length, got {len(n_mels)} for {len(self.window_lengths)}."
            )
        self.sampling_rate = sampling_rate
        self.n_mels = tuple(int(count) for count in n_mels)
        for index, (window_length, count) in enumerate(zip(self.window_lengths, self.n_mels)):
            filterbank = slaney_mel_filterbank(sampling_rate, window_length, count, mel_fmin, mel_fmax)
            self.register_buffer(f"mel_filters_{index}", filterbank, persistent=False)

    def spectrograms(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """Mel spectrograms (linear magnitude), one per scale.

        Args:
            audio (`torch.FloatTensor` of shape `(batch_size, time)`):
                Mono signals (fold channels into the batch first).

        Returns:
            List of `torch.FloatTensor` of shape `(batch_size, n_mels, frames)`.
        """
        return [
            torch.matmul(getattr(self, f"mel_filters_{index}").to(device=audio.device, dtype=audio.dtype), magnitude)
            for index, magnitude in enumerate(super().spectrograms(audio))
        ]


def _to_tensor(audio, name: str, dtype: torch.dtype) -> torch.Tensor:
    tensor = audio.detach() if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio))
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must hold floating-point audio samples in [-1, 1], got dtype {tensor.dtype}.")
    return tensor.to(dtype)


def _batched_pair(reference, estimate, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Both signals as `[B, T]` tensors of `dtype`, and whether the inputs were single 1-D signals."""
    reference = _to_tensor(reference, "reference", dtype)
    estimate = _to_tensor(estimate, "estimate", dtype)
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference and estimate must have the same shape, got {tuple(reference.shape)} and "
            f"{tuple(estimate.shape)}; trim or pad the reconstruction to the original length first."
        )
    single = reference.ndim == 1
    if reference.ndim == 3 and reference.shape[1] == 1:
        reference, estimate = reference[:, 0], estimate[:, 0]
    elif single:
        reference, estimate = reference[None], estimate[None]
    elif reference.ndim != 2:
        raise ValueError(f"Metrics take mono audio of shape [T], [B, T] or [B, 1, T], got {tuple(reference.shape)}.")
    if reference.shape[-1] == 0:
        raise ValueError("reference and estimate are empty.")
    return reference, estimate, single


def _per_item_result(values: torch.Tensor | Sequence[float], single: bool) -> float | np.ndarray:
    values = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return float(values[0]) if single else values


@functools.lru_cache(maxsize=8)
def _mel_distance_module(sampling_rate: int) -> DacMelDistance:
    return DacMelDistance(sampling_rate, reduction="none")


@functools.lru_cache(maxsize=1)
def _stft_distance_module() -> DacStftDistance:
    return DacStftDistance(reduction="none")


def _spectral_distance(module: DacStftDistance, reference, estimate) -> float | np.ndarray:
    # float32, as the official evaluation (audiotools stores audio as float32).
    reference, estimate, single = _batched_pair(reference, estimate, torch.float32)
    with torch.no_grad():
        return _per_item_result(module(reference, estimate), single)


def mel_distance(reference, estimate, sampling_rate: int) -> float | np.ndarray:
    """Multi-scale log-mel L1 distance of :class:`DacMelDistance` (the paper's "mel distance"; lower is better).

    Computed at ``sampling_rate``; the paper's numbers are at 44.1 kHz. Needs at least 1025 samples.
    Returns a float for `[T]` inputs, an array of shape `[B]` for `[B, T]` or `[B, 1, T]` inputs.
    """
    sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    return _spectral_distance(_mel_distance_module(sampling_rate), reference, estimate)


def stft_distance(reference, estimate, sampling_rate: int) -> float | np.ndarray:
    """Two-scale (2048, 512) log-magnitude plus magnitude STFT distance of :class:`DacStftDistance` (lower is better).

    Windows are in samples, so the value does not depend on ``sampling_rate`` (taken for a uniform signature).
    Needs at least 1025 samples. Returns a float for `[T]` inputs, an array of shape `[B]` otherwise.
    """
    check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    return _spectral_distance(_stft_distance_module(), reference, estimate)


def si_sdr(reference, estimate, sampling_rate: int) -> float | np.ndarray:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better), on zero-mean signals.

    ``s = <e, r> r / ||r||^2`` (with ``r``, ``e`` the mean-removed reference and estimate), then
    ``10 log10(||s||^2 / ||e - s||^2)``; computed in float64 with a float64-epsilon guard on each sum, so that
    identical signals give a large finite value. ``sampling_rate`` is taken for a uniform signature.
    Returns a float for `[T]` inputs, an array of shape `[B]` otherwise.
    """
    check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    reference, estimate, single = _batched_pair(reference, estimate, torch.float64)
    reference = reference - reference.mean(dim=-1, keepdim=True)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    eps = torch.finfo(torch.float64).eps
    scale = (estimate * reference).sum(dim=-1, keepdim=True) + eps
    scale = scale / (reference.square().sum(dim=-1, keepdim=True) + eps)
    target = scale * reference
    distortion = estimate - target
    ratio = (target.square().sum(dim=-1) + eps) / (distortion.square().sum(dim=-1) + eps)
    return _per_item_result(10 * torch.log10(ratio), single)


def _import_optional(module_name: str, package_name: str, metric_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"{metric_name} needs the optional package `{package_name}` (import name `{module_name}`): "
            f'install it with `pip install "modeling_dac[eval]"` or `pip install {package_name}`.'
        ) from error


def _numpy_pairs(reference, estimate, sampling_rate: int, target_rate: int | None):
    """Per-item float64 numpy pairs, resampled with soxr to `target_rate` when given."""
    reference, estimate, single = _batched_pair(reference, estimate, torch.float64)
    pairs = []
    for reference_item, estimate_item in zip(reference.cpu().numpy(), estimate.cpu().numpy()):
        if target_rate is not None and target_rate != sampling_rate:
            reference_item = soxr.resample(reference_item, sampling_rate, target_rate)
            estimate_item = soxr.resample(estimate_item, sampling_rate, target_rate)
        pairs.append((reference_item, estimate_item))
    return pairs, single


def require_visqol() -> ModuleType:
    """visqol-python's module; an ImportError says how to install it (also when another `visqol` is installed)."""
    visqol_package = _import_optional("visqol", "visqol-python", "visqol")
    if not hasattr(visqol_package, "VisqolApi"):  # Google's own bindings share the import name
        raise ImportError(
            f"The installed `visqol` module ({visqol_package.__file__}) is not visqol-python, which visqol needs: "
            "install it with `pip install visqol-python`."
        )
    return visqol_package


@functools.lru_cache(maxsize=2)
def _visqol_api(mode: str):
    api = require_visqol().VisqolApi()
    api.create(mode=mode)
    return api


def visqol(reference, estimate, sampling_rate: int, mode: str = "audio") -> float | np.ndarray:
    """ViSQOL MOS-LQO (1 to 5, higher is better) with ``visqol-python``.

    ``mode="audio"`` (the paper's setting) resamples both signals to 48 kHz with soxr and uses the audio SVR
    model; ``mode="speech"`` resamples to 16 kHz. Returns a float for `[T]` inputs, an array of shape `[B]`
    otherwise.
    """
    if mode not in VISQOL_SAMPLING_RATES:
        raise ValueError(f"visqol mode must be one of {sorted(VISQOL_SAMPLING_RATES)}, got {mode!r}.")
    sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    api = _visqol_api(mode)
    target_rate = VISQOL_SAMPLING_RATES[mode]
    pairs, single = _numpy_pairs(reference, estimate, sampling_rate, target_rate)
    scores = [
        api.measure_from_arrays(reference_item, estimate_item, target_rate).moslqo
        for reference_item, estimate_item in pairs
    ]
    return _per_item_result(scores, single)


def pesq(reference, estimate, sampling_rate: int, mode: str = "wb") -> float | np.ndarray:
    """PESQ MOS-LQO (ITU-T P.862, higher is better) with the ``pesq`` package, for speech.

    Both signals are resampled to 16 kHz with soxr; ``mode`` is ``"wb"`` (wide band, P.862.2) or ``"nb"``
    (narrow band). Returns a float for `[T]` inputs, an array of shape `[B]` otherwise.
    """
    if mode not in ("wb", "nb"):
        raise ValueError(f"pesq mode must be 'wb' or 'nb', got {mode!r}.")
    sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    pesq_package = _import_optional("pesq", "pesq", "pesq")
    pairs, single = _numpy_pairs(reference, estimate, sampling_rate, PESQ_SAMPLING_RATE)
    scores = [
        pesq_package.pesq(PESQ_SAMPLING_RATE, reference_item, estimate_item, mode)
        for reference_item, estimate_item in pairs
    ]
    return _per_item_result(scores, single)


def stoi(reference, estimate, sampling_rate: int, extended: bool = False) -> float | np.ndarray:
    """Short-time objective intelligibility (0 to 1, higher is better) with ``pystoi``, for speech.

    ``pystoi`` resamples to 10 kHz itself; ``extended=True`` gives ESTOI. Returns a float for `[T]` inputs, an
    array of shape `[B]` otherwise.
    """
    sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    pystoi = _import_optional("pystoi", "pystoi", "stoi")
    pairs, single = _numpy_pairs(reference, estimate, sampling_rate, None)
    scores = [
        pystoi.stoi(reference_item, estimate_item, sampling_rate, extended=extended)
        for reference_item, estimate_item in pairs
    ]
    return _per_item_result(scores, single)
