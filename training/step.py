"""One training iteration of the released DAC recipe, with NaN/Inf protection.

Order: generator forward; discriminator update on the detached reconstruction; generator losses against the
updated discriminator; generator update. With both adversarial weights at 0 the discriminator is skipped and
only the generator is updated (mel, optional waveform L1 and quantizer losses). A non-finite loss or gradient
norm on any process skips the update on every process (so distributed runs stay in step) and is reported to
the caller.
"""

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from modeling_dac.metrics import DacMelDistance, DacStftDistance

from .discriminator import DacDiscriminatorOutput
from .losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

__all__ = ["DacGanStep", "DacStepResult"]


@dataclass
class DacStepResult:
    """
    What one iteration did.

    Args:
        values (`dict[str, torch.Tensor]`):
            Detached scalars: losses (`loss/...`) and gradient norms (`grad_norm/...`) reached before any skip.
        skipped (`str`, *optional*):
            `None` when every update ran (both networks, or the generator alone when the discriminator is not
            trained), else which update was skipped for a non-finite value and why.
        timings (`dict[str, float]`):
            Seconds spent in the generator forward and update (`generator`) and the discriminator update
            (`discriminator`, 0 when it is not trained); filled only with `DacGanStep(measure_time=True)`.
    """

    values: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _split(output: DacDiscriminatorOutput, batch_size: int) -> tuple[DacDiscriminatorOutput, DacDiscriminatorOutput]:
    """The discriminator judged `cat([real, fake])`; give the two halves back."""
    halves = []
    for part in (slice(None, batch_size), slice(batch_size, None)):
        halves.append(
            DacDiscriminatorOutput(
                logits=[logits[part] for logits in output.logits],
                feature_maps=[[feature_map[part] for feature_map in maps] for maps in output.feature_maps],
            )
        )
    return halves[0], halves[1]


class DacGanStep:
    """
    Runs training iterations on prepared (Accelerate) models and optimizers. The schedulers are stepped here,
    once per update, so the learning rates decay per iteration whatever the number of processes.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        generator,
        discriminator,
        optimizer_g,
        optimizer_d,
        scheduler_g,
        scheduler_d,
        training_args,
        sampling_rate: int,
        measure_time: bool = False,
    ):
        self.accelerator = accelerator
        self.generator = generator
        self.discriminator = discriminator
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.scheduler_g = scheduler_g
        self.scheduler_d = scheduler_d
        self.args = training_args
        self.measure_time = measure_time
        self.mel_distance = DacMelDistance(sampling_rate).to(accelerator.device)
        self.stft_distance = DacStftDistance().to(accelerator.device)

    @property
    def minimum_length(self) -> int:
        """Length in samples from which the losses (and the discriminator, when it is trained) take every length."""
        lengths = [self.mel_distance.minimum_length, self.stft_distance.minimum_length]
        if self.args.trains_discriminator:
            lengths.append(self.accelerator.unwrap_model(self.discriminator).minimum_length)
        return max(lengths)

    def _finite_everywhere(self, *values: torch.Tensor) -> bool:
        finite = torch.stack([torch.isfinite(value.detach()).all() for value in values]).all().float().reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite).min()
        return bool(finite.item() > 0)

    def _clock(self) -> float:
        if self.measure_time and self.accelerator.device.type == "cuda":
            torch.cuda.synchronize(self.accelerator.device)
        return time.perf_counter()

    def __call__(self, audio: torch.Tensor) -> DacStepResult:
        """`audio`: `(batch, 1, samples)` on the accelerator's device, `samples` a multiple of the hop length."""
        self.generator.train()
        self.discriminator.train()
        result = DacStepResult()
        start = self._clock()
        output = self.generator(audio, return_dict=True)
        reconstruction = output.audio_values.float()
        forward_done = self._clock()
        if self.args.trains_discriminator:
            self._update_discriminator(audio, reconstruction, result)
        discriminator_done = self._clock()
        if result.skipped is None:
            self._update_generator(audio, reconstruction, output, result)
        if self.measure_time:
            result.timings = {
                "discriminator": discriminator_done - forward_done,
                "generator": (forward_done - start) + (self._clock() - discriminator_done),
            }
        return result

    def _update_discriminator(self, audio: torch.Tensor, reconstruction: torch.Tensor, result: DacStepResult):
        judged = self.discriminator(torch.cat([audio, reconstruction.detach()]))
        loss = discriminator_loss(*_split(judged, audio.shape[0]))
        result.values["loss/discriminator"] = loss.detach()
        if not self._finite_everywhere(loss):
            result.skipped = "discriminator and generator updates: non-finite discriminator loss"
            return
        self.optimizer_d.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        grad_norm = self.accelerator.clip_grad_norm_(self.discriminator.parameters(), self.args.discriminator_max_grad_norm)
        result.values["grad_norm/discriminator"] = grad_norm.detach()
        if not torch.isfinite(grad_norm):  # gradients are reduced already, so every process agrees
            self.optimizer_d.zero_grad(set_to_none=True)
            result.skipped = "discriminator and generator updates: non-finite discriminator gradient"
            return
        self.optimizer_d.step()
        self.scheduler_d.step()

    @contextmanager
    def _discriminator_frozen(self):
        """
        The generator loss needs gradients through the discriminator, not for its weights: skip computing those
        (and the distributed gradient sync of the discriminator) until the generator's backward pass is done.
        """
        discriminator_parameters = [p for p in self.discriminator.parameters() if p.requires_grad]
        with self.accelerator.no_sync(self.discriminator):
            for parameter in discriminator_parameters:
                parameter.requires_grad_(False)
            try:
                yield
            finally:
                for parameter in discriminator_parameters:
                    parameter.requires_grad_(True)

    def _update_generator(self, audio: torch.Tensor, reconstruction: torch.Tensor, output, result: DacStepResult):
        adversarial = self.args.trains_discriminator
        with self._discriminator_frozen() if adversarial else nullcontext():
            losses = {
                "loss/mel": self.mel_distance(audio, reconstruction),
                "loss/waveform_l1": F.l1_loss(reconstruction, audio),
            }
            loss = (
                self.args.mel_loss_weight * losses["loss/mel"]
                + self.args.waveform_loss_weight * losses["loss/waveform_l1"]
                + output.loss
            )
            if adversarial:
                adversarial_losses = self._adversarial_losses(audio, reconstruction)
                losses.update(adversarial_losses)
                loss = (
                    loss
                    + self.args.adversarial_loss_weight * adversarial_losses["loss/adversarial"]
                    + self.args.feature_matching_loss_weight * adversarial_losses["loss/feature_matching"]
                )
            losses.update({"loss/commitment": output.commitment_loss, "loss/codebook": output.codebook_loss})
            losses["loss/generator"] = loss
            result.values.update({name: value.detach() for name, value in losses.items()})
            with torch.no_grad():
                result.values["loss/stft"] = self.stft_distance(audio, reconstruction)
            if not self._finite_everywhere(loss):
                result.skipped = "generator update: non-finite generator loss"
                return
            self.optimizer_g.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
        trainable = [p for p in self.generator.parameters() if p.requires_grad]
        grad_norm = self.accelerator.clip_grad_norm_(trainable, self.args.generator_max_grad_norm)
        result.values["grad_norm/generator"] = grad_norm.detach()
        if not torch.isfinite(grad_norm):
            self.optimizer_g.zero_grad(set_to_none=True)
            result.skipped = "generator update: non-finite generator gradient"
            return
        self.optimizer_g.step()
        self.scheduler_g.step()

    def _adversarial_losses(self, audio: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator's least-squares adversarial loss and feature-matching loss against the discriminator."""
        real, fake = _split(self.discriminator(torch.cat([audio, reconstruction])), audio.shape[0])
        return {
            "loss/adversarial": generator_adversarial_loss(fake),
            "loss/feature_matching": feature_matching_loss(real, fake),
        }
