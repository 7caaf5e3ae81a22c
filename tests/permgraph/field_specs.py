"""Our own tiny PyTorch versions of the architectures the field writes permutation specs for by
hand, each with one correct hand-written spec in Git Re-Basin's PyTorch form (``axes_to_perm``:
state-dict name -> one permutation name or None per axis), built from small helpers the way
those specs are written, and the buggy variants found in public specs.

The helpers mirror how hand specs are written (our own code): ``dense`` / ``conv`` give a weight
(out, in, ...) its output and input permutations and the bias the output one; ``norm`` gives
the 1-D affine parameters and running statistics of a norm the one permutation of its channels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

Spec = dict[str, tuple[str | None, ...]]


def dense(name: str, p_in: str | None, p_out: str | None, bias: bool = True) -> Spec:
    return {f"{name}.weight": (p_out, p_in), **({f"{name}.bias": (p_out,)} if bias else {})}


def conv(name: str, p_in: str | None, p_out: str | None, bias: bool = False) -> Spec:
    return {f"{name}.weight": (p_out, p_in, None, None), **({f"{name}.bias": (p_out,)} if bias else {})}


def norm(name: str, p: str | None, stats: bool = True) -> Spec:
    keys = ("weight", "bias") + (("running_mean", "running_var") if stats else ())
    return {f"{name}.{k}": (p,) for k in keys}


def rebasin(axes_to_perm: Spec) -> dict[str, Spec]:
    return {"axes_to_perm": axes_to_perm}


# ---- MLP -------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 12), nn.Linear(12, 12), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def mlp_spec() -> Spec:
    return {**dense("fc1", None, "P0"), **dense("fc2", "P0", "P1"), **dense("fc3", "P1", None)}


# ---- VGG with a classifier and BatchNorm -------------------------------------------------------
class VGG(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (4, 4, 8), hidden: int = 12, classes: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            if i == 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


VGG_CONVS = ("features.0", "features.3", "features.7")  # each followed by its BatchNorm


def vgg_spec() -> Spec:
    spec: Spec = {}
    p_in = None
    for i, name in enumerate(VGG_CONVS):
        index = int(name.split(".")[1])
        spec |= conv(name, p_in, f"P_conv{i}", bias=True) | norm(f"features.{index + 1}", f"P_conv{i}")
        p_in = f"P_conv{i}"
    return spec | dense("classifier.0", p_in, "P_fc0") | dense("classifier.2", "P_fc0", None)


# ---- ResNet-20 (BasicBlocks, 3 stages of 3) ---------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (4, 6, 8), classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0])
        c = widths[0]
        for s, w in enumerate(widths, start=1):
            blocks = [BasicBlock(c if b == 0 else w, w, 1 if s == 1 or b else 2) for b in range(3)]
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
            c = w
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20_spec(shift_stages: bool = False) -> Spec:
    """Stream permutation ``P_s{stage}`` (stem, shortcuts, every block's conv2 / bn2 output), inner
    ``P_bg{k}`` per block. ``shift_stages``: the bug of a spec whose stage groups are shifted by one
    block (each stage's first block still writes the previous stage's permutation)."""
    spec = conv("conv1", None, "P_s1") | norm("bn1", "P_s1")
    k = 0
    for s in (1, 2, 3):
        for b in range(3):
            name, p_in = f"layer{s}.{b}", f"P_s{s - 1 if b == 0 and s > 1 else s}"
            p_out = f"P_s{s - 1}" if shift_stages and b == 0 and s > 1 else f"P_s{s}"
            spec |= conv(f"{name}.conv1", p_in, f"P_bg{k}") | norm(f"{name}.bn1", f"P_bg{k}")
            spec |= conv(f"{name}.conv2", f"P_bg{k}", p_out) | norm(f"{name}.bn2", p_out)
            if b == 0 and s > 1:
                spec |= conv(f"{name}.shortcut.0", p_in, p_out) | norm(f"{name}.shortcut.1", p_out)
            k += 1
    return spec | dense("fc", "P_s3", None)


# ---- ResNet-50-style bottleneck net -------------------------------------------------------------
class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class BottleneckNet(nn.Module):
    def __init__(self, widths: tuple[int, int] = (2, 3), classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6)
        c = 6
        for s, w in enumerate(widths, start=1):
            setattr(self, f"layer{s}", nn.Sequential(Bottleneck(c, w, 1 if s == 1 else 2), Bottleneck(4 * w, w, 1)))
            c = 4 * w
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def bottleneck_spec(conv2_for_conv3: bool = False) -> Spec:
    """Stem ``P_bg0``, per stage a stream ``P_s{stage}``, per block ``P_{block}_a`` / ``_b``.
    ``conv2_for_conv3``: the bug of a spec that lists conv2/bn2 where conv3/bn3 belong in the
    second block of stage 1 (the stream permutation on conv2's output, the inner one on conv3's)."""
    spec = conv("conv1", None, "P_bg0") | norm("bn1", "P_bg0")
    p_prev = "P_bg0"
    for s in (1, 2):
        for b in range(2):
            name, blk, stream = f"layer{s}.{b}", f"P_{s}{b}", f"P_s{s}"
            p_in = p_prev if b == 0 else stream
            out2, out3 = (stream, f"{blk}_b") if conv2_for_conv3 and (s, b) == (1, 1) else (f"{blk}_b", stream)
            spec |= conv(f"{name}.conv1", p_in, f"{blk}_a") | norm(f"{name}.bn1", f"{blk}_a")
            spec |= conv(f"{name}.conv2", f"{blk}_a", out2) | norm(f"{name}.bn2", out2)
            spec |= conv(f"{name}.conv3", f"{blk}_b", out3) | norm(f"{name}.bn3", out3)
            if b == 0:
                spec |= conv(f"{name}.downsample.0", p_in, stream) | norm(f"{name}.downsample.1", stream)
        p_prev = f"P_s{s}"
    return spec | dense("fc", p_prev, None)


# ---- a small ViT -------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention; ``kv_heads < heads`` is grouped-query attention (GQA): each key /
    value head serves ``heads // kv_heads`` query heads."""

    def __init__(self, dim: int, heads: int, kv_heads: int | None = None) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads or heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, self.kv_heads * self.head_dim)
        self.v = nn.Linear(dim, self.kv_heads * self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        att = torch.softmax(q @ k.transpose(-2, -1) / self.head_dim**0.5, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))


class ViT(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, hidden: int = 24, classes: int = 5) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.02)
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(dim), Attention(dim, heads), nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = x + self.attn(self.ln1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.head(self.norm(x[:, 0]))


def vit_spec(qk_as_one: bool = False) -> Spec:
    """The residual stream ``P_res`` and the MLP's ``P_mlp``. Re-Basin's dicts cannot express
    heads, so a correct spec in that form leaves the attention's inner axes alone (sound,
    incomplete). ``qk_as_one``: the bug of giving the query and key rows of all heads one
    permutation ``P_qk``."""
    spec = {"cls": (None, None, "P_res"), "pos": (None, None, "P_res")} | conv("patch", None, "P_res", bias=True)
    spec |= norm("ln1", "P_res", stats=False) | norm("ln2", "P_res", stats=False) | norm("norm", "P_res", stats=False)
    p_qk = "P_qk" if qk_as_one else None
    spec |= dense("attn.q", "P_res", p_qk) | dense("attn.k", "P_res", p_qk) | dense("attn.v", "P_res", None)
    spec |= dense("attn.proj", None, "P_res") | dense("fc1", "P_res", "P_mlp") | dense("fc2", "P_mlp", "P_res")
    return spec | dense("head", "P_res", None)


# ---- a grouped-query attention block ----------------------------------------------------------
class GQABlock(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, kv_heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.ln = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, kv_heads)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn(self.ln(h))
        return self.head(h)


def gqa_spec(qk_as_one: bool = False) -> Spec:
    """The residual stream ``P_res`` only (sound, incomplete: the heads need the structured
    form); ``qk_as_one``: query and key rows of all heads under one permutation ``P_qk``: here the
    query has 16 rows and the key 8, so the sizes do not even agree."""
    spec = dense("embed", None, "P_res") | norm("ln", "P_res", stats=False)
    p_qk = "P_qk" if qk_as_one else None
    spec |= dense("attn.q", "P_res", p_qk) | dense("attn.k", "P_res", p_qk) | dense("attn.v", "P_res", None)
    return spec | dense("attn.proj", None, "P_res") | dense("head", "P_res", None)


MODELS = {  # name -> (constructor, example inputs, correct spec, complete?)
    "mlp": (MLP, lambda: (torch.randn(3, 8),), mlp_spec, True),
    "vgg": (VGG, lambda: (torch.randn(2, 3, 8, 8),), vgg_spec, True),
    "resnet20": (ResNet20, lambda: (torch.randn(2, 3, 8, 8),), resnet20_spec, True),
    "bottleneck": (BottleneckNet, lambda: (torch.randn(2, 3, 8, 8),), bottleneck_spec, True),
    "vit": (ViT, lambda: (torch.randn(2, 3, 8, 8),), vit_spec, False),
    "gqa": (GQABlock, lambda: (torch.randn(2, 5, 6),), gqa_spec, False),
}
