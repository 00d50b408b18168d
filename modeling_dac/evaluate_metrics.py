"""The shared base of the local `evaluate` modules under metrics/: each is one modeling_dac.metrics function.

A module there subclasses `DacPairwiseMetric` (imported as `evaluate_metrics.DacPairwiseMetric`, so that the
module's only class is its own metric, which is what `evaluate.load` looks for) and sets `metric_name`,
`score` and its description strings.
"""

from typing import Any, Callable, ClassVar

import datasets
import evaluate
import numpy as np

__all__ = ["DacPairwiseMetric"]


class DacPairwiseMetric(evaluate.Metric):
    """Mean over (reference, prediction) pairs of `score(reference, prediction, sampling_rate, **options)`."""

    metric_name: ClassVar[str]
    score: ClassVar[Callable[..., float]]
    description: ClassVar[str]
    inputs_description: ClassVar[str]
    citation: ClassVar[str] = ""

    def _info(self):
        return evaluate.MetricInfo(
            description=self.description,
            citation=self.citation,
            inputs_description=self.inputs_description,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, sampling_rate=None, **options: Any):
        if sampling_rate is None:
            raise ValueError(
                f"{self.metric_name} needs the audio's sampling_rate, e.g. compute(..., sampling_rate=44100)."
            )
        scores = [
            type(self).score(np.asarray(reference), np.asarray(prediction), sampling_rate, **options)
            for reference, prediction in zip(references, predictions)
        ]
        return {self.metric_name: float(np.mean(scores))}
