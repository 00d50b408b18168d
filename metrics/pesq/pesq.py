"""PESQ as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.pesq; needs the pesq package)."""

import datasets
import evaluate
import numpy as np
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
class Pesq(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, sampling_rate=None, mode="wb"):
        if sampling_rate is None:
            raise ValueError("pesq needs the audio's sampling_rate, e.g. compute(..., sampling_rate=44100).")
        scores = [
            pesq(np.asarray(reference), np.asarray(prediction), sampling_rate, mode=mode)
            for reference, prediction in zip(references, predictions)
        ]
        return {"pesq": float(np.mean(scores))}
