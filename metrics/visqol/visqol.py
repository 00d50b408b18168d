"""ViSQOL as a local Hugging Face `evaluate` module (wraps modeling_dac.metrics.visqol; needs visqol-python)."""

import evaluate
from modeling_dac import evaluate_metrics
from modeling_dac.metrics import visqol

_DESCRIPTION = """
ViSQOL v3 MOS-LQO (1 to 5, higher is better) computed with visqol-python. In "audio" mode (the DAC paper's
setting) both signals are resampled to 48 kHz with soxr; "speech" mode resamples to 16 kHz.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 1-D float arrays, the reconstructed (or degraded) audio.
    references: list of 1-D float arrays, the original audio (each of the same length as its prediction).
    sampling_rate: int, sampling rate of both in Hz (required).
    mode: "audio" (default) or "speech".
Returns:
    visqol: the mean over the pairs of their MOS-LQO.
"""

_CITATION = """
@inproceedings{chinen2020visqol,
  title={{ViSQOL} v3: An Open Source Production Ready Objective Speech and Audio Metric},
  author={Chinen, Michael and Lim, Felicia S. C. and Skoglund, Jan and Gureev, Nikita and O'Gorman, Feargus and
          Hines, Andrew},
  booktitle={International Conference on Quality of Multimedia Experience (QoMEX)},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Visqol(evaluate_metrics.DacPairwiseMetric):
    metric_name = "visqol"
    score = staticmethod(visqol)
    description = _DESCRIPTION
    inputs_description = _KWARGS_DESCRIPTION
    citation = _CITATION
