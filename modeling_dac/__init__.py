"""modeling_dac: a Hugging Face-native Descript Audio Codec (DAC)."""

from .configuration_dac import DacConfig
from .dac_file import DacFile, DacFileError, DacFileMetadata
from .feature_extraction_dac import DacFeatureExtractor
from .modeling_dac import DacDecoderOutput, DacEncoderOutput, DacModel, DacOutput, DacPreTrainedModel
from .streaming import DacStreamingDecoder, DacStreamingEncoder

__all__ = [
    "DacConfig",
    "DacDecoderOutput",
    "DacEncoderOutput",
    "DacFile",
    "DacFileError",
    "DacFileMetadata",
    "DacFeatureExtractor",
    "DacModel",
    "DacOutput",
    "DacPreTrainedModel",
    "DacStreamingDecoder",
    "DacStreamingEncoder",
]
