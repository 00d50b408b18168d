"""STOI as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.stoi; needs pystoi)."""

import datasets
import evaluate
import numpy as np
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
class Stoi(evaluate.Metric):
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

    def _compute(self, predictions, references, sampling_rate=None, extended=False):
        if sampling_rate is None:
            raise ValueError("stoi needs the audio's sampling_rate, e.g. compute(..., sampling_rate=44100).")
        scores = [
            stoi(np.asarray(reference), np.asarray(prediction), sampling_rate, extended=extended)
            for reference, prediction in zip(references, predictions)
        ]
        return {"stoi": float(np.mean(scores))}
