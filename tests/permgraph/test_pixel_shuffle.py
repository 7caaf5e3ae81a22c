"""``pixel_shuffle`` / ``pixel_unshuffle``: channel ``c·r² + i·r + j`` ↔ (channel ``c``, sub-pixel
``(i, j)``). The ``c`` factor moves with the channels; the sub-pixel factors become spatial and
are blocked by what reads space (a convolution), so a conv before a shuffle permutes its
output channels in whole blocks of ``r²``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from tests.permgraph.by_hand import output_with

F64 = torch.float64


class Upsampler(nn.Module):
    """ESPCN-like: conv to ``c·r²`` channels, pixel shuffle, then a 3x3 conv reads space."""

    def __init__(self, c: int = 4, r: int = 2):
        super().__init__()
        self.expand, self.shuffle = nn.Conv2d(3, c * r * r, 1), nn.PixelShuffle(r)
        self.head = nn.Conv2d(c, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.shuffle(self.expand(x)).relu())


class Downsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.unshuffle, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.PixelUnshuffle(2), nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.unshuffle(self.a(x)).relu())


class ShuffleOut(Upsampler):
    """The shuffled image is what the model returns: its channels mean something to the caller."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.expand(x))


def images() -> torch.Tensor:
    return torch.randn(2, 3, 4, 4, dtype=F64)


def groups_of(spec: permgraph.PermSpec, param: str) -> list[permgraph.Group]:
    return [g for g in spec.groups if any(m.param == param and m.axis == 0 for m in g.members)]


def test_the_conv_before_a_shuffle_moves_in_blocks_of_r_squared():
    model = Upsampler().double()
    spec = permgraph.infer(model, (images(),))
    assert [g.size for g in spec.free_groups] == [4]
    (member,) = [m for m in spec.free_groups[0].members if m.param == "expand.weight"]
    assert member.structure == "block-expanded x4"
    subpixels = [g for g in groups_of(spec, "expand.weight") if not g.is_free]
    assert subpixels and all("spatial axis of a convolution" in g.blocked for g in subpixels)
    assert permgraph.verify(model, spec, (images(),)).ok


def test_by_hand_whole_blocks_keep_the_function_and_sub_pixels_do_not():
    torch.manual_seed(0)
    model, x = Upsampler().double(), images()
    state = model.state_dict()
    y = output_with(model, state, x)
    p = torch.tensor([2, 0, 3, 1])
    blocks = (p[:, None] * 4 + torch.arange(4)).reshape(-1)  # channel c·4 + k moves with c
    moved = dict(state, **{"expand.weight": state["expand.weight"][blocks], "expand.bias": state["expand.bias"][blocks],
                           "head.weight": state["head.weight"][:, p]})
    assert torch.allclose(output_with(model, moved, x), y, atol=1e-12)
    swap = torch.arange(16).view(4, 4)[:, [1, 0, 2, 3]].reshape(-1)  # two sub-pixels of every channel
    moved = dict(state, **{"expand.weight": state["expand.weight"][swap], "expand.bias": state["expand.bias"][swap]})
    assert not torch.allclose(output_with(model, moved, x), y, atol=1e-6)


def test_unshuffle_puts_sub_pixels_into_the_channels():
    model = Downsampler().double()
    spec = permgraph.infer(model, (images(),))
    assert [g.size for g in spec.free_groups] == [4]
    (member,) = [m for m in spec.free_groups[0].members if m.param == "b.weight"]
    assert member.axis == 1 and member.structure == "block-expanded x4"
    assert permgraph.verify(model, spec, (images(),)).ok


def test_a_shuffled_output_blocks_the_channels():
    model = ShuffleOut().double()
    spec = permgraph.infer(model, (images(),))
    assert spec.free_groups == [] and all("model output" in g.blocked for g in groups_of(spec, "expand.weight"))


@pytest.mark.parametrize(("op", "shape", "r", "free"), [
    (F.pixel_shuffle, (2, 12, 3, 4), 2, (2, 2, 2, 3, 3, 4)),
    (F.pixel_shuffle, (12, 3, 4), 2, (2, 2, 3, 3, 4)),  # no batch axis
    (F.pixel_shuffle, (1, 2, 18, 2, 2), 3, (2, 2, 2, 2, 3, 3)),  # two leading axes
    (F.pixel_shuffle, (2, 3, 4, 4), 1, (2, 3, 4, 4)),
    (F.pixel_unshuffle, (2, 3, 4, 6), 2, (2, 2, 2, 2, 3, 3)),
])
def test_the_rules_pass_the_rule_check(op, shape, r, free):
    report = permgraph.assert_rule_sound(op, (torch.randn(*shape, dtype=F64), r))
    assert report.free_sizes == free, report
