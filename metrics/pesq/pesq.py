"""PESQ as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.pesq; needs the pesq package)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import pesq

_DESCRIPTION = """
PESQ MOS-LQO (ITU-T P.862; wide band P.862.2 by default), for speech, computed with the pesq package after
resampling both signals to 16 kHz with soxr. Higher is better (about 1 to 4.64 in wide band).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required).
    mode: "wb" (default) or "nb".
Returns:
    pesq: the mean over the pairs of their PESQ score.
"""

_CITATION = """
@inproceedings{rix2001pesq,
  title={Perceptual Evaluation of Speech Quality ({PESQ}) -- a New Method for Speech Quality Assessment of
         Telephone Networks and Codecs},
  author={Rix, Antony W. and Beerends, John G. and Hollier, Michael P. and Hekstra, Andries P.},
  booktitle={IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year={2001}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pesq(evaluate_metrics.DacPairwiseMetric):
    metric_name = "pesq"
    score = staticmethod(pesq)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
