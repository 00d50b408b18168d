"""Mel distance of the DAC paper as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.mel_distance)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import mel_distance

_DESCRIPTION = """
Multi-scale log-mel L1 distance, exactly as DAC's training loss and evaluation (audiotools MelSpectrogramLoss with
DAC's conf/base.yml): window lengths 32 to 2048, hop window/4, 5 to 320 Slaney mel filters, L1 between
log10(clamp(mel, 1e-5)), summed over the 7 scales. Lower is better; 0 for identical signals.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required; the paper's numbers are at 44100).
Returns:
    mel_distance: the mean over the pairs of their mel distance.
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
class MelDistance(evaluate_metrics.DacPairwiseMetric):
    metric_name = "mel_distance"
    score = staticmethod(mel_distance)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
