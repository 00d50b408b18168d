"""modeling_dac: a Hugging Face-native Descript Audio Codec (DAC)."""

from .configuration_dac import DacConfig
from .feature_extraction_dac import DacFeatureExtractor
from .modeling_dac import DacDecoderOutput, DacEncoderOutput, DacModel, DacOutput, DacPreTrainedModel

__all__ = [
    "DacConfig",
    "DacDecoderOutput",
    "DacEncoderOutput",
    "DacFeatureExtractor",
    "DacModel",
    "DacOutput",
    "DacPreTrainedModel",
]
