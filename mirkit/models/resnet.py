"""ResNet encoders for mels (1 channel, time tokens) and covers (RGB, grid tokens).

The full preset uses torchvision's own ResNet-18; narrower ones are assembled from
torchvision's BasicBlock with the same stem and stage layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock

from mirkit.errors import MirkitError
from mirkit.models.config import ResNetConfig

RESNET18 = ResNetConfig()
IMAGENET_FILE = "resnet18-f37072fd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeights(MirkitError, RuntimeError):
    """Pretrained weights that are not on this machine; the message names the fix."""


def imagenet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet_trunk(config: ResNetConfig, in_channels: int, weights: str = "none") -> nn.Sequential:
    """Stem and four stages of a ResNet (no pooling head): [B, C, H, W] -> feature map
    [B, widths[-1], H/32, W/32]."""
    if config == RESNET18:
        net = resnet18(weights=None)
        if weights == "imagenet":
            path = imagenet_weights_path()
            if not path.exists():
                raise MissingWeights(
                    f"ImageNet weights for ResNet-18 are not in the local torch cache ({path}). "
                    f"Copy {IMAGENET_FILE} there (fetch it once where there is internet: "
                    f'python -c "import torchvision; torchvision.models.resnet18('
                    f"weights='IMAGENET1K_V1')\"), or use image weights 'none'"
                )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
    if weights != "none":
        raise MissingWeights(
            f"pretrained weights exist only for ResNet-18, not widths "
            f"{config.widths} / blocks {config.blocks}; use image weights 'none'"
        )
    w = config.widths
    stem = [
        nn.Conv2d(in_channels, w[0], 7, 2, 3, bias=False),
        nn.BatchNorm2d(w[0]),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    stages = [
        _stage(w[max(0, i - 1)], w[i], b, 1 if i == 0 else 2) for i, b in enumerate(config.blocks)
    ]
    return nn.Sequential(*stem, *stages)


class AudioEncoder(nn.Module):
    """Log-mel [B, n_mels, frames] -> time tokens [B, T', C] and their mask.

    Each mel is standardised per item (dB levels differ between recordings); the feature
    map is averaged over frequency, leaving one token per 32 frames."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.trunk = resnet_trunk(config, in_channels=1)
        self.width = config.widths[-1]

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(mel.shape[-1], device=mel.device)
        valid = positions[None, :] < frames[:, None]
        count = valid.sum(1).clamp(min=1)[:, None, None]
        weight = valid[:, None, :].to(mel.dtype)
        mean = (mel * weight).sum((1, 2), keepdim=True) / (count * mel.shape[1])
        var = (((mel - mean) * weight) ** 2).sum((1, 2), keepdim=True) / (count * mel.shape[1])
        x = (mel - mean) / (var.sqrt() + 1e-5) * weight
        features = self.trunk(x[:, None])  # [B, C, F', T']
        tokens = features.mean(dim=2).transpose(1, 2)  # [B, T', C]
        stride = mel.shape[-1] / tokens.shape[1]
        token_start = torch.arange(tokens.shape[1], device=mel.device) * stride
        mask = token_start[None, :] < frames[:, None]
        return tokens, mask


class ImageEncoder(nn.Module):
    """RGB cover [B, 3, H, W] (ImageNet-normalised) -> grid tokens [B, H/32 * W/32, C]."""

    def __init__(self, config: ResNetConfig, weights: str):
        super().__init__()
        self.trunk = resnet_trunk(config, in_channels=3, weights=weights)
        self.width = config.widths[-1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.trunk(image).flatten(2).transpose(1, 2)
