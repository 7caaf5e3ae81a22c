"""Datasets made here: characters of Python's standard library and documentation, and seeded
Gaussian clusters."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

from zoo.data.splits import DataSplits
from zoo.errors import ZooError

__all__ = ["TEXT_FILES", "stdlib_sources", "stdlib_corpus", "docs_corpus", "load_text", "load_text_docs", "load_synthetic"]


# A fixed list of standard-library sources present in Python 3.10-3.13 (missing ones are skipped).
TEXT_FILES = (
    "abc.py",
    "argparse.py",
    "ast.py",
    "bisect.py",
    "calendar.py",
    "collections/__init__.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "json/decoder.py",
    "json/encoder.py",
    "logging/__init__.py",
    "numbers.py",
    "operator.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "shlex.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "threading.py",
    "tokenize.py",
    "typing.py",
)


def stdlib_sources() -> dict[str, str]:
    """The ASCII text of each file of :data:`TEXT_FILES` found in the running Python's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = {}
    for rel in TEXT_FILES:
        p = stdlib / rel
        if p.exists():
            found[rel] = "".join(ch for ch in p.read_text(encoding="utf-8", errors="ignore") if ord(ch) < 128)
    if not found:
        raise ZooError(f"no Python standard-library sources found under {stdlib}; the text datasets need them")
    return found


def stdlib_corpus(max_chars: int | None = None) -> tuple[str, list[str]]:
    """The sources of :func:`stdlib_sources` joined by newlines, and the files used."""
    sources = stdlib_sources()
    corpus = "\n".join(sources.values())
    return (corpus[:max_chars] if max_chars else corpus), list(sources)


def docs_corpus(max_chars: int | None = None) -> tuple[str, list[str]]:
    """English prose: the Python documentation's topic pages that ship with the standard library
    (``pydoc_data.topics``, about 460k characters), ASCII only."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # pragma: no cover - part of every CPython
        raise ZooError("the text-docs dataset needs pydoc_data (part of the Python standard library)") from e
    corpus = "\n".join("".join(ch for ch in topics[k] if ord(ch) < 128) for k in sorted(topics))
    return (corpus[:max_chars] if max_chars else corpus), ["pydoc_data.topics"]


def _windows(name: str, corpus: str, block_size: int, source: str) -> DataSplits:
    """Character windows of ``block_size`` with y = x shifted by one; contiguous 90/5/5 % splits."""
    ids = torch.tensor(list(corpus.encode("ascii")), dtype=torch.long)
    n = (len(ids) - 1) // block_size
    if n < 20:
        raise ZooError(f"text corpus of {len(ids)} characters is too short for block_size={block_size}")
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    a, b = int(n * 0.9), int(n * 0.95)
    return DataSplits(name, (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), 128, (block_size,), None, None,
                      None, source)  # fmt: skip


def load_text(
    root: Path | None, split: str, *, block_size: int = 64, max_chars: int | None = None
) -> DataSplits:
    corpus, used = stdlib_corpus(max_chars)
    return _windows("text", corpus, block_size, f"{len(used)} stdlib files, {len(corpus)} chars")


def load_text_docs(
    root: Path | None, split: str, *, block_size: int = 64, max_chars: int | None = None
) -> DataSplits:
    corpus, _ = docs_corpus(max_chars)
    return _windows("text-docs", corpus, block_size, f"pydoc_data.topics, {len(corpus)} chars")


def load_synthetic(
    root: Path | None,
    split: str,
    *,
    features: int = 32,
    num_classes: int = 4,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 128,
    seed: int = 0,
) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, features, generator=g) * 0.25
    n = n_train + n_val + n_test
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, features, generator=g)
    a, b = n_train, n_train + n_val
    return DataSplits(
        "synthetic",
        (x[:a], y[:a]),
        (x[a:b], y[a:b]),
        (x[b:], y[b:]),
        num_classes,
        (features,),
        None,
        None,
        None,
        f"seed {seed}",
    )
