"""DacConfig: the single source of DAC hyperparameters.

Field names follow the Transformers port (`transformers.DacConfig`), so a config.json written by either
loads in the other. The latent size (`hidden_size`) is a field of its own (128 in the 44 kHz 16 kbps model), and
`hop_length` is always derived from the ratios.
"""

import inspect
import math

from transformers import PretrainedConfig
from transformers.utils import logging

from .validation import check_positive_integer

logger = logging.get_logger(__name__)

__all__ = ["DacConfig"]


def _integer_ratios(name: str, ratios) -> list[int]:
    """The strides as ints; one that is not a whole number (2.5, True) is an error rather than truncated."""
    if any(isinstance(ratio, bool) or int(ratio) != ratio for ratio in ratios):
        raise ValueError(f"`{name}` must hold whole numbers, got {list(ratios)}.")
    return [int(ratio) for ratio in ratios]


def _as_list(value):
    """Ratios compare equal as lists or tuples (config.json holds lists, the defaults are tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


class DacConfig(PretrainedConfig):
    r"""
    Configuration of a [`DacModel`]. The defaults describe the released 44.1 kHz, 8 kbps model.

    Args:
        encoder_hidden_size (`int`, defaults to 64):
            Width of the first encoder convolution; it doubles after every downsampling block.
        downsampling_ratios (`list[int]`, defaults to `[2, 4, 8, 8]`):
            Strides of the encoder blocks. Their product is the hop length.
        decoder_hidden_size (`int`, defaults to 1536):
            Width of the first decoder convolution; it halves after every upsampling block.
        upsampling_ratios (`list[int]`, *optional*):
            Strides of the decoder blocks. Defaults to `downsampling_ratios` reversed; the product must match.
        hidden_size (`int`, *optional*):
            Size of the latent between encoder and quantizer. Defaults to
            `encoder_hidden_size * 2 ** len(downsampling_ratios)` (1024 for the 44 kHz model); the 44 kHz
            16 kbps model uses 128.
        n_codebooks (`int`, defaults to 9):
            Number of residual vector quantizer codebooks.
        codebook_size (`int`, defaults to 1024):
            Number of entries per codebook (a power of two).
        codebook_dim (`int`, defaults to 8):
            Dimension of the factorised code space in which the nearest-neighbour lookup happens.
        quantizer_dropout (`float`, defaults to 0.0):
            Fraction of each training batch that is quantized with a random number of codebooks
            (0.5 in the released training recipe).
        commitment_loss_weight (`float`, defaults to 0.25):
            Weight of the commitment loss in `loss`.
        codebook_loss_weight (`float`, defaults to 1.0):
            Weight of the codebook loss in `loss`.
        sampling_rate (`int`, defaults to 44100):
            Sample rate of the audio the model takes and returns, in Hz.
        hop_length (`int`, *optional*):
            Accepted for compatibility with the Transformers port's config.json and always recomputed as the
            product of `downsampling_ratios`; an inconsistent stored value (the port's 16/24 kHz hub configs
            say 512) is corrected with a warning.

    Derived, read-only: `frame_rate` (code frames per second, a float: 86.13 at 44.1 kHz) and `bitrate`
    (bits per second at all codebooks).

    Example:

    ```python
    >>> from modeling_dac import DacConfig
    >>> config = DacConfig(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8], n_codebooks=32)
    >>> config.hop_length, config.frame_rate, config.bitrate
    (320, 75.0, 24000.0)
    ```
    """

    model_type = "dac"

    def __init__(
        self,
        encoder_hidden_size: int = 64,
        downsampling_ratios: list[int] | tuple[int, ...] = (2, 4, 8, 8),
        decoder_hidden_size: int = 1536,
        upsampling_ratios: list[int] | tuple[int, ...] | None = None,
        hidden_size: int | None = None,
        n_codebooks: int = 9,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        quantizer_dropout: float = 0.0,
        commitment_loss_weight: float = 0.25,
        codebook_loss_weight: float = 1.0,
        sampling_rate: int = 44100,
        hop_length: int | None = None,
        **kwargs,
    ):
        downsampling_ratios = _integer_ratios("downsampling_ratios", downsampling_ratios)
        if upsampling_ratios is None:
            upsampling_ratios = downsampling_ratios[::-1]
        upsampling_ratios = _integer_ratios("upsampling_ratios", upsampling_ratios)
        if hidden_size is None:
            hidden_size = encoder_hidden_size * 2 ** len(downsampling_ratios)

        self.encoder_hidden_size = encoder_hidden_size
        self.downsampling_ratios = downsampling_ratios
        self.decoder_hidden_size = decoder_hidden_size
        self.upsampling_ratios = upsampling_ratios
        self.hidden_size = hidden_size
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = quantizer_dropout
        self.commitment_loss_weight = commitment_loss_weight
        self.codebook_loss_weight = codebook_loss_weight
        self.sampling_rate = sampling_rate
        self._validate()

        derived_hop_length = math.prod(downsampling_ratios)
        if hop_length is not None and int(hop_length) != derived_hop_length:
            logger.warning(
                f"hop_length={hop_length} in the config does not match the product of downsampling_ratios "
                f"{downsampling_ratios} ({derived_hop_length}); using {derived_hop_length}."
            )
        self.hop_length = derived_hop_length
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """
        As [`~transformers.PretrainedConfig.from_dict`], but overrides of DAC's own fields (`from_pretrained(...,
        downsampling_ratios=...)`) go through `__init__`, so they are validated, instead of being set on the
        finished config. Stored fields that held the values derived from an overridden field (`hop_length`,
        `upsampling_ratios` as the reversed strides, `hidden_size` as the final encoder width) are derived again.
        """
        parameters = inspect.signature(cls.__init__).parameters
        own_fields = {
            name for name, parameter in parameters.items() if parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        }
        overrides = {name: kwargs.pop(name) for name in list(kwargs) if name in own_fields - {"self"}}
        ratios = config_dict.get("downsampling_ratios", parameters["downsampling_ratios"].default)
        width = config_dict.get("encoder_hidden_size", parameters["encoder_hidden_size"].default)
        derived = {  # field: (the fields it is derived from, its value derived from the stored ones)
            "hop_length": ({"downsampling_ratios"}, math.prod(ratios)),
            "upsampling_ratios": ({"downsampling_ratios"}, list(ratios)[::-1]),
            "hidden_size": ({"encoder_hidden_size", "downsampling_ratios"}, width * 2 ** len(ratios)),
        }
        config_dict = {**config_dict, **overrides}
        for name, (sources, stored_derivation) in derived.items():
            followed = _as_list(config_dict.get(name)) == _as_list(stored_derivation)
            if name not in overrides and sources & overrides.keys() and followed:
                config_dict.pop(name)
        return super().from_dict(config_dict, **kwargs)

    def _validate(self) -> None:
        for name in ("encoder_hidden_size", "decoder_hidden_size", "hidden_size", "n_codebooks", "codebook_dim"):
            setattr(self, name, check_positive_integer(getattr(self, name), name))
        self.sampling_rate = check_positive_integer(self.sampling_rate, "sampling_rate", "in Hz")
        if not self.downsampling_ratios or any(ratio < 1 for ratio in self.downsampling_ratios):
            raise ValueError(
                f"`downsampling_ratios` must be a non-empty list of positive integers, got {self.downsampling_ratios}."
            )
        if any(ratio < 1 for ratio in self.upsampling_ratios):
            raise ValueError(f"`upsampling_ratios` must hold positive integers, got {self.upsampling_ratios}.")
        if math.prod(self.upsampling_ratios) != math.prod(self.downsampling_ratios):
            raise ValueError(
                f"`upsampling_ratios` {self.upsampling_ratios} must multiply to the same hop length as "
                f"`downsampling_ratios` {self.downsampling_ratios}."
            )
        if self.decoder_hidden_size % 2 ** len(self.upsampling_ratios):
            raise ValueError(
                f"`decoder_hidden_size` ({self.decoder_hidden_size}) must be divisible by "
                f"2 ** len(upsampling_ratios) = {2 ** len(self.upsampling_ratios)}: each decoder block halves it."
            )
        if (
            not isinstance(self.codebook_size, int)
            or self.codebook_size < 2
            or self.codebook_size & (self.codebook_size - 1)
        ):
            raise ValueError(f"`codebook_size` must be a power of two >= 2, got {self.codebook_size!r}.")
        if not 0.0 <= float(self.quantizer_dropout) <= 1.0:
            raise ValueError(f"`quantizer_dropout` must lie in [0, 1], got {self.quantizer_dropout!r}.")
        for name in ("commitment_loss_weight", "codebook_loss_weight"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"`{name}` must be non-negative, got {getattr(self, name)!r}.")

    @property
    def frame_rate(self) -> float:
        """Code frames per second (86.13 for the 44.1 kHz models)."""
        return self.sampling_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second when all `n_codebooks` are used."""
        return self.bitrate_at(self.n_codebooks)

    def bitrate_at(self, n_quantizers: int) -> float:
        """Bits per second when only the first `n_quantizers` codebooks are kept."""
        return n_quantizers * math.log2(self.codebook_size) * self.frame_rate
