"""GAN losses of the released DAC recipe: least-squares adversarial losses and feature matching.

The mel reconstruction loss is `modeling_dac.metrics.DacMelDistance` (the paper's mel distance, differentiable);
the codebook and commitment losses come with the generator's output. The discriminator's output is a
`DacDiscriminatorOutput`: one logit map and a list of feature maps per sub-discriminator.
"""

import torch
import torch.nn.functional as F

from .discriminator import DacDiscriminatorOutput

__all__ = ["discriminator_loss", "feature_matching_loss", "generator_adversarial_loss"]


def discriminator_loss(real: DacDiscriminatorOutput, fake: DacDiscriminatorOutput) -> torch.Tensor:
    """Least squares: sum over sub-discriminators of `mean((1 - D(real))^2) + mean(D(fake)^2)`."""
    return sum(
        torch.mean((1 - real_logits) ** 2) + torch.mean(fake_logits**2)
        for real_logits, fake_logits in zip(real.logits, fake.logits)
    )


def generator_adversarial_loss(fake: DacDiscriminatorOutput) -> torch.Tensor:
    """Least squares: sum over sub-discriminators of `mean((1 - D(fake))^2)`."""
    return sum(torch.mean((1 - fake_logits) ** 2) for fake_logits in fake.logits)


def feature_matching_loss(real: DacDiscriminatorOutput, fake: DacDiscriminatorOutput) -> torch.Tensor:
    """Sum over every hidden feature map of every sub-discriminator of `mean|fake - real|` (real detached)."""
    return sum(
        F.l1_loss(fake_map, real_map.detach())
        for real_maps, fake_maps in zip(real.feature_maps, fake.feature_maps)
        for real_map, fake_map in zip(real_maps, fake_maps)
    )
