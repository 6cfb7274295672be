"""Networks trained by dwlab, built by name through :func:`build_model`.

- ``resnet18``: CIFAR-style ResNet18 (3x3 stem, no max-pool, four stages of two basic
  blocks each, widths ``w, 2w, 4w, 8w``); 11.17 M parameters at width 64 for CIFAR-10.
- ``fc5``: a 5-layer fully connected network (four hidden layers of ``width`` units).
- ``mlp``: a small two-hidden-layer perceptron, sized for scikit-learn's 8x8 digits.
- ``stochastic_binary``: one fully connected layer whose weights are binary (+1/-1),
  sampled anew on every forward pass from a probability held as a parameter; the
  comparison network of the magnetic stochastic-synapse papers.

Models take images shaped (batch, channels, height, width); the flat networks flatten them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 for small images: 3x3 stem, no max-pool, stages of widths w, 2w, 4w, 8w."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        in_planes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            stages.append(
                nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class FullyConnected(nn.Module):
    """Flatten, then ``len(hidden)`` ReLU layers and a linear read-out."""

    def __init__(self, in_features: int, hidden: list[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_features
        for h in hidden:
            layers += [nn.Linear(size, h), nn.ReLU()]
            size = h
        layers.append(nn.Linear(size, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StochasticBinaryLinear(nn.Module):
    """A linear layer with binary weights sampled per forward pass.

    The parameter ``weight`` holds a real value whose clamp to [-1, 1] is read as the
    mean of a +/-1 weight: ``p(+1) = (1 + w) / 2``. In training mode every forward draws
    fresh binary weights (a stochastic synapse switching with that probability) and the
    gradient passes straight through to ``w`` (E[w_b] = w, so the estimator is unbiased
    for the mean weight). In eval mode it also samples, so repeated forwards of the same
    input give a predictive distribution; set ``deterministic=True`` to use the mean.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-0.1, 0.1))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.deterministic = False
        # Scale keeps pre-activations O(1) with +/-1 weights.
        self.scale = in_features**-0.5

    def probability(self) -> torch.Tensor:
        """Probability that each binary weight is +1."""
        return (self.weight.detach().clamp(-1, 1) + 1) / 2

    def sample_weight(self) -> torch.Tensor:
        mean = self.weight.clamp(-1, 1)
        if self.deterministic:
            return mean
        binary = torch.where(torch.rand_like(mean) < (mean.detach() + 1) / 2, 1.0, -1.0)
        # Straight-through: forward uses the binary sample, backward the mean.
        return mean + (binary - mean).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.sample_weight() * self.scale, self.bias)


def _flat_features(in_channels: int, image_size: int) -> int:
    return in_channels * image_size * image_size


def _resnet18(in_channels: int, num_classes: int, width: int, image_size: int) -> nn.Module:
    return ResNet18(in_channels, num_classes, width)


def _fc5(in_channels: int, num_classes: int, width: int, image_size: int) -> nn.Module:
    return FullyConnected(_flat_features(in_channels, image_size), [width] * 4, num_classes)


def _mlp(in_channels: int, num_classes: int, width: int, image_size: int) -> nn.Module:
    return FullyConnected(_flat_features(in_channels, image_size), [width, width], num_classes)


def _stochastic_binary(
    in_channels: int, num_classes: int, width: int, image_size: int
) -> nn.Module:
    return StochasticBinaryLinear(_flat_features(in_channels, image_size), num_classes)


MODELS: dict[str, Callable[[int, int, int, int], nn.Module]] = {
    "resnet18": _resnet18,
    "fc5": _fc5,
    "mlp": _mlp,
    "stochastic_binary": _stochastic_binary,
}


def build_model(
    name: str, in_channels: int = 3, num_classes: int = 10, width: int = 64, image_size: int = 32
) -> nn.Module:
    """A model from the fixed registry :data:`MODELS`.

    ``width`` is the base width of ResNet18 and the hidden size of the flat networks
    (unused by ``stochastic_binary``); ``image_size`` is the side of the square input.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model '{name}'; choose one of {', '.join(sorted(MODELS))}"
        ) from None
    return factory(in_channels, num_classes, width, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
