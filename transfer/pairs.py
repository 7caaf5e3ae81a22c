"""Where a :class:`~transfer.matching.Matcher` keeps the pairs of its coupled tensors.

A tensor touched by several groups ("coupled") cannot be summed into a cost matrix at ``add()``
time, because its contribution depends on the other groups' permutations: the matcher keeps its
pairs and reads them again whenever such a contribution must be formed. FGMT adds one gradient pair
per step, so whatever holds those pairs grows with the number of steps T.

* :class:`MemoryPairs` keeps them in RAM: right for weight matching (one pair) and small runs.
* :class:`DiskPairs` writes each pair to one safetensors file as it arrives and streams the files
  back, one pair at a time, when a contribution is formed: the matcher's resident memory for pairs
  is one pair, whatever T is (measured in ``docs/results/memory.md``).

Both hand the matcher the same tensors in the same order, so a matcher gives bit-identical
permutations with either.

>>> import torch
>>> pairs = DiskPairs()
>>> pairs.append({"w": torch.ones(2, 3)}, {"w": torch.zeros(2, 3)})
>>> len(pairs), pairs.resident_bytes
(1, 0)
>>> [(t["w"].sum().item(), s["w"].sum().item()) for t, s in pairs.read(["w"])]
[(6.0, 0.0)]
>>> pairs.close()
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from permgraph.apply import State

__all__ = ["PairSource", "MemoryPairs", "DiskPairs"]


class PairSource:
    """The interface the matcher uses: ``append`` a pair, ``read`` pairs back in order."""

    def append(self, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, keys: Iterable[str], start: int = 0) -> Iterator[tuple[State, State]]:
        """Pairs ``start, start + 1, ...`` in the order they were appended, each as (target, source)
        dicts restricted to ``keys`` (a key a pair lacks is left out)."""
        raise NotImplementedError

    @property
    def resident_bytes(self) -> int:
        """Bytes of pair tensors held in RAM between reads."""
        raise NotImplementedError


class MemoryPairs(PairSource):
    """Every pair in RAM (the memory grows with the number of pairs)."""

    def __init__(self) -> None:
        self._pairs: list[tuple[State, State]] = []

    def append(self, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
        self._pairs.append((dict(target), dict(source)))

    def __len__(self) -> int:
        return len(self._pairs)

    def read(self, keys: Iterable[str], start: int = 0) -> Iterator[tuple[State, State]]:
        keys = list(keys)
        for t, s in self._pairs[start:]:
            yield {k: t[k] for k in keys if k in t}, {k: s[k] for k in keys if k in s}

    @property
    def resident_bytes(self) -> int:
        return sum(x.numel() * x.element_size() for pair in self._pairs for d in pair for x in d.values())


class DiskPairs(PairSource):
    """One safetensors file per pair under ``folder`` (a fresh temporary folder by default, removed
    by :meth:`close` or when the object is collected); nothing is kept in RAM between reads.

    Reading memory-maps one file at a time (``safe_open``) and copies out only the requested
    tensors, so a read costs the page cache, not the process, once the pair is dropped. A given
    ``folder`` is the caller's: it is created if needed and never removed."""

    def __init__(self, folder: str | Path | None = None) -> None:
        if folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="permgraph-pairs-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        else:
            self.folder = Path(folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            self._finalizer = None
        self._count = 0

    def _file(self, i: int) -> Path:
        return self.folder / f"pair_{i:06d}.safetensors"

    def append(self, target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
        tensors: State = {}
        seen: set[int] = set()
        for side, d in (("target", target), ("source", source)):
            for k, v in d.items():
                v = v.detach().cpu().contiguous()
                if v.data_ptr() in seen:  # safetensors refuses shared storage (a pair of a state with itself)
                    v = v.clone()
                seen.add(v.data_ptr())
                tensors[f"{side}/{k}"] = v
        save_file(tensors, str(self._file(self._count)))
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def read(self, keys: Iterable[str], start: int = 0) -> Iterator[tuple[State, State]]:
        keys = list(keys)
        for i in range(start, self._count):
            with safe_open(str(self._file(i)), framework="pt") as f:
                names = set(f.keys())
                t = {k: f.get_tensor(f"target/{k}") for k in keys if f"target/{k}" in names}
                s = {k: f.get_tensor(f"source/{k}") for k in keys if f"source/{k}" in names}
            yield t, s

    @property
    def resident_bytes(self) -> int:
        return 0

    def close(self) -> None:
        """Remove the temporary folder (a given folder is left alone)."""
        if self._finalizer is not None:
            self._finalizer()
