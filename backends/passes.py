"""Module-level graph passes run before export. Each is small, named and tested alone.

They change how a stage is computed, never what it computes (up to float rounding)."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edge4k.models.blocks import SpaceToChannelDown


class ChannelAffine(nn.Module):
    """x * scale + shift per channel: what an eval-mode BatchNorm is, in two ops
    every delegate runs (a standalone BatchNorm is not lowered by all of them)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv (inside an nn.Sequential)
    into that conv's weights, and turn any other BatchNorm into a ChannelAffine."""
    module = copy.deepcopy(module).eval()
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = parent._modules[a], parent._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                    parent._modules[b] = nn.Identity()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                inv = torch.rsqrt(child.running_var + child.eps)
                scale = inv * (child.weight if child.affine else 1.0)
                shift = -child.running_mean * scale + (child.bias if child.affine else 0.0)
                setattr(parent, name, ChannelAffine(scale.detach(), shift.detach()))
    return module


def count_batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


class PointwiseLinear(nn.Module):
    """A 1x1 convolution computed as nn.Linear over tokens: (B, C, H, W) ->
    (B, HW, C) -> linear -> back. XNNPACK's int4 group-wise weight kernels exist
    for linear layers only, and recognise them on 3-D token tensors."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.linear(x.reshape(b, c, h * w).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, -1, h, w)


def pointwise_convs_to_linear(module: nn.Module, accept=lambda conv: True) -> nn.Module:
    """Replace every dense 1x1 conv that `accept`s with a PointwiseLinear (same maths)."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1) and child.groups == 1
                    and accept(child)):
                setattr(parent, name, PointwiseLinear(child))
    return module


def space_to_channel_as_conv(module: nn.Module) -> nn.Module:
    """Rewrite every SpaceToChannelDown (pixel_unshuffle(2), then a 1x1 conv) as one
    2x2 stride-2 conv with the same weights: output channel o sees input channel c
    at sub-pixel (dy, dx) through 1x1 weight [o, 4c + 2dy + dx]. Exported to ONNX,
    pixel_unshuffle is a 6-D reshape/transpose that Qualcomm's HTP leaves to the CPU;
    a strided conv runs everywhere."""
    module = copy.deepcopy(module).eval()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpaceToChannelDown):
                conv = child.proj[0]
                strided = nn.Conv2d(conv.in_channels // 4, conv.out_channels, 2, stride=2, bias=conv.bias is not None)
                with torch.no_grad():
                    strided.weight.copy_(conv.weight.reshape(conv.out_channels, -1, 2, 2))
                    if conv.bias is not None:
                        strided.bias.copy_(conv.bias)
                setattr(parent, name, nn.Sequential(strided, *list(child.proj)[1:]))
    return module
