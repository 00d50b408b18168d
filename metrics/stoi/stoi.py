"""STOI as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.stoi; needs pystoi)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import stoi

_DESCRIPTION = """
Short-time objective intelligibility (0 to 1, higher is better), for speech, computed with pystoi (which
resamples to 10 kHz itself); extended=True gives ESTOI.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required).
    extended: bool, ESTOI instead of STOI (default False).
Returns:
    stoi: the mean over the pairs of their STOI.
"""

_CITATION = """
@article{taal2011stoi,
  title={An Algorithm for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech},
  author={Taal, Cees H. and Hendriks, Richard C. and Heusdens, Richard and Jensen, Jesper},
  journal={IEEE Transactions on Audio, Speech, and Language Processing},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Stoi(evaluate_metrics.DacPairwiseMetric):
    metric_name = "stoi"
    score = staticmethod(stoi)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
