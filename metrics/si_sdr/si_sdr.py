"""Scale-invariant SDR as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.si_sdr)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import si_sdr

_DESCRIPTION = """
Scale-invariant signal-to-distortion ratio in dB on zero-mean signals: with s the projection of the estimate
on the reference, 10 log10(||s||^2 / ||estimate - s||^2). Higher is better; invariant to the estimate's gain.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required for a uniform interface; SI-SDR does not use it).
Returns:
    si_sdr: the mean over the pairs of their SI-SDR in dB.
"""

_CITATION = """
@inproceedings{leroux2019sdr,
  title={{SDR} -- Half-baked or Well Done?},
  author={Le Roux, Jonathan and Wisdom, Scott and Erdogan, Hakan and Hershey, John R.},
  booktitle={IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year={2019}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SiSdr(evaluate_metrics.DacPairwiseMetric):
    metric_name = "si_sdr"
    score = staticmethod(si_sdr)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
