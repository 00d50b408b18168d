"""DAC's STFT distance as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.stft_distance)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import stft_distance

_DESCRIPTION = """
Two-scale STFT distance, exactly as DAC's logged metric (audiotools MultiScaleSTFTLoss defaults): windows 2048
and 512, hop window/4, centred reflect-padded STFT with a periodic Hann window; per scale the L1 between
log10(clamp(|X|, 1e-5)^2) plus the L1 between magnitudes, summed over the 2 scales. Lower is better; 0 for identical
signals.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required for a uniform interface; windows are in samples).
Returns:
    stft_distance: the mean over the pairs of their STFT distance.
"""

_CITATION = """
@inproceedings{kumar2023high,
  title={High-Fidelity Audio Compression with Improved {RVQGAN}},
  author={Kumar, Rithesh and Seetharaman, Prem and Luebs, Alejandro and Kumar, Ishaan and Kumar, Kundan},
  booktitle={Advances in Neural Information Processing Systems},
  year={2023}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StftDistance(evaluate_metrics.DacPairwiseMetric):
    metric_name = "stft_distance"
    score = staticmethod(stft_distance)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
