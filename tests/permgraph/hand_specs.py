"""Hand-written permutation specs, derived from the architectures the way Git Re-Basin and
the paper's code write them: the oracle that inferred specs must equal.

Each function returns the free groups as a set of frozensets of (state-dict key, axis).
"""

from __future__ import annotations

from torch import nn

Partition = set[frozenset[tuple[str, int]]]


def _linear_out(prefix: str, bias: bool = True) -> set[tuple[str, int]]:
    return {(f"{prefix}.weight", 0)} | ({(f"{prefix}.bias", 0)} if bias else set())


def _bn(prefix: str) -> set[tuple[str, int]]:
    return {(f"{prefix}.{k}", 0) for k in ("weight", "bias", "running_mean", "running_var")}


def mlp_chain(layer_names: list[str], bias: bool = True) -> Partition:
    """Linear layers in sequence: one group per hidden layer (its out-features and the next
    layer's in-features)."""
    groups: Partition = set()
    for a, b in zip(layer_names, layer_names[1:]):
        groups.add(frozenset(_linear_out(a, bias) | {(f"{b}.weight", 1)}))
    return groups


def sequential_convnet(model: nn.Module) -> Partition:
    """Plain conv / linear stacks (Conv8, VGG without BN): every layer's outputs tie to the
    next layer's inputs, through pooling and flatten of a 1×1 map."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    groups: Partition = set()
    for (a, ma), (b, _) in zip(layers, layers[1:]):
        groups.add(frozenset(_linear_out(a, ma.bias is not None) | {(f"{b}.weight", 1)}))
    return groups


def resnet(model: nn.Module) -> Partition:
    """BasicBlock ResNets (zoo resnet18 / resnet20 and torchvision resnet18): one group per
    stage for the residual stream (stem or shortcut conv + BN, every block's conv2 + bn2,
    and the next consumers' inputs), one inner group per block (conv1 + bn1 → conv2)."""
    groups: Partition = set()
    stream = {("conv1.weight", 0)} | _bn("bn1")
    stages = [getattr(model, f"layer{i}") for i in range(1, 5) if hasattr(model, f"layer{i}")]
    for s, stage in enumerate(stages, start=1):
        for b, block in enumerate(stage):
            p = f"layer{s}.{b}"
            short = getattr(block, "shortcut", None) or getattr(block, "downsample", None)
            short_name = "shortcut" if getattr(block, "shortcut", None) is not None else "downsample"
            if short is not None:  # the stream changes width here: close the old group
                stream |= {(f"{p}.conv1.weight", 1), (f"{p}.{short_name}.0.weight", 1)}
                groups.add(frozenset(stream))
                stream = {(f"{p}.{short_name}.0.weight", 0)} | _bn(f"{p}.{short_name}.1")
            else:
                stream |= {(f"{p}.conv1.weight", 1)}
            groups.add(frozenset({(f"{p}.conv1.weight", 0), (f"{p}.conv2.weight", 1)} | _bn(f"{p}.bn1")))
            stream |= {(f"{p}.conv2.weight", 0)} | _bn(f"{p}.bn2")
    head = "fc" if hasattr(model, "fc") else "linear"
    stream |= {(f"{head}.weight", 1)}
    groups.add(frozenset(stream))
    return groups
