"""Prompt token counting for chat bodies, per tokenizer family.

Two ways to count a piece of text:

* **exact** — family ``openai`` with a tiktoken encoding that is available *offline*
  (:func:`load_encoding` never downloads: it only reads rank files that a package or a
  directory already holds, checked against tiktoken's published SHA-256);
* **calibrated estimate** — every other case.  The text is classified by *script*
  with two C-speed passes (UTF-8 encode, ``bytes.translate`` to one class byte per
  character) and a handful of ``bytes.count`` calls: ASCII letters, word starts,
  digits and digit runs, punctuation and its runs, indentation, newlines, accented
  Latin, Greek/Cyrillic, Hebrew/Arabic, Indic/Thai, CJK, Hangul, symbols, emoji.  The
  tokens are a non-negative linear function of those counts, fitted per family on
  ``tests/data/context_corpus.jsonl`` against the best reference tokenizer available
  offline (see ``docs/context.md`` for the references and the measured error).

A chat body is counted the way OpenAI documents it (the "counting tokens" cookbook):
``per_message`` tokens per message plus its role and content, 1 more for a ``name``,
``priming`` tokens for the reply, tool definitions in OpenAI's function format, and
images by the vision rule (85 base + 170 per 512 px tile once fitted in 2048² and
the short side in 768; 85 with ``detail: low``; a flat 765 when the size cannot be
read from a ``data:`` URL).  Other families use their chat template's framing and
image rule (:data:`CALIBRATIONS`).  The count of a body is always the ``fixed`` part
plus the sum of :func:`count_message_tokens` over its messages, so trimming can
subtract messages without recounting.

Nothing here keeps state between calls; bodies are counted afresh every time.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, get_args

import orjson

from ..presets import PRESETS, Family
from ._encodings import Encoding, encoding_name_for, load_encoding

__all__ = [
    "CALIBRATIONS",
    "FAMILIES",
    "FEATURES",
    "Calibration",
    "Encoding",
    "Family",
    "PromptCount",
    "count_message_tokens",
    "count_prompt",
    "count_prompt_tokens",
    "count_text_tokens",
    "encoding_name_for",
    "family_for",
    "fixed_prompt_tokens",
    "load_encoding",
    "text_features",
]

FAMILIES: tuple[Family, ...] = get_args(Family)


# ----------------------------------------------------------------------------- features

FEATURES = (
    "words",  # runs of letters (ASCII, accented Latin, Greek, Cyrillic, Hebrew/Arabic)
    "ascii_letters",
    "case_changes",  # lower→upper and upper→lower pairs (camelCase, base64, identifiers)
    "letter_digit",  # letter→digit and digit→letter pairs (hex, ids, base64)
    "digits",
    "digit_runs",
    "punct",  # ASCII punctuation and symbols
    "punct_runs",
    "indent",  # pairs of spaces (indentation, alignment)
    "newlines",
    "latin_ext",  # U+0080-U+037F: accented Latin, Latin-1 symbols, IPA, combining marks
    "greek",  # U+0380-U+03FF
    "cyrillic",  # U+0400-U+058F: Cyrillic, Armenian
    "semitic",  # U+0590-U+07FF: Hebrew, Arabic, Syriac, Thaana, N'Ko
    "devanagari",  # U+0900-U+097F
    "indic",  # the rest of U+0800-U+0FFF: other Indic scripts, Thai, Lao, Tibetan
    "u1000",  # U+1000-U+1FFF: Myanmar, Georgian, Jamo, Ethiopic, Khmer, Vietnamese Latin
    "symbols",  # U+2000-U+2FFF, U+E000-U+FFFF: punctuation, arrows, math, box, fullwidth
    "cjk",  # U+3000-U+9FFF: CJK punctuation, kana, ideographs
    "hangul",  # U+A000-U+DFFF: Hangul syllables (and Yi)
    "astral",  # U+10000 and up: emoji, rare ideographs
    "texts",  # 1 per non-empty text (a constant term)
)

_CLASS_OF = bytearray(b" " * 256)
for _b in range(256):
    _ch = chr(_b)
    if _b < 0x80:
        if _ch.isascii() and _ch.islower():
            _CLASS_OF[_b] = ord("a")
        elif _ch.isascii() and _ch.isupper():
            _CLASS_OF[_b] = ord("A")
        elif _ch.isdigit():
            _CLASS_OF[_b] = ord("0")
        elif _ch in "\n\r":
            _CLASS_OF[_b] = ord("n")
        elif 0x21 <= _b <= 0x7E:
            _CLASS_OF[_b] = ord(".")
    elif 0xC2 <= _b <= 0xCD:
        _CLASS_OF[_b] = ord("L")
    elif 0xCE <= _b <= 0xCF:
        _CLASS_OF[_b] = ord("G")
    elif 0xD0 <= _b <= 0xD5:
        _CLASS_OF[_b] = ord("Y")
    elif 0xD6 <= _b <= 0xDF:
        _CLASS_OF[_b] = ord("H")
    elif _b == 0xE0:
        _CLASS_OF[_b] = ord("I")
    elif _b == 0xE1:
        _CLASS_OF[_b] = ord("V")
    elif _b == 0xE2 or 0xEE <= _b <= 0xEF:
        _CLASS_OF[_b] = ord("P")
    elif 0xE3 <= _b <= 0xE9:
        _CLASS_OF[_b] = ord("C")
    elif 0xEA <= _b <= 0xED:
        _CLASS_OF[_b] = ord("K")
    elif 0xF0 <= _b <= 0xF4:
        _CLASS_OF[_b] = ord("E")
_CLASSES = bytes(_CLASS_OF)
_CONTINUATION = bytes(range(0x80, 0xC0))


def _only(keep: bytes) -> bytes:
    """A class-byte table mapping ``keep`` to ``x`` and everything else to a space."""
    table = bytearray(b" " * 256)
    for k in keep:
        table[k] = ord("x")
    return bytes(table)


_WORD = _only(b"aALGYHV")
_DIGIT = _only(b"0")
_PUNCT = _only(b".")


def _runs(cls: bytes, table: bytes) -> int:
    marked = cls.translate(table)
    return marked.count(b" x") + (marked[:1] == b"x")


def text_features(text: str) -> tuple[int, ...]:
    """The script counts the estimate is a linear function of (:data:`FEATURES`)."""
    if not text:
        return (0,) * len(FEATURES)
    # One class byte per character: continuation bytes are deleted, lead bytes classed.
    raw = text.encode("utf-8", "replace")
    cls = raw.translate(_CLASSES, _CONTINUATION)
    c = cls.count
    devanagari = raw.count(b"\xe0\xa4") + raw.count(b"\xe0\xa5") if b"\xe0" in raw else 0
    return (
        _runs(cls, _WORD),
        c(b"a") + c(b"A"),
        c(b"aA") + c(b"Aa"),
        c(b"a0") + c(b"A0") + c(b"0a") + c(b"0A"),
        c(b"0"),
        _runs(cls, _DIGIT),
        c(b"."),
        _runs(cls, _PUNCT),
        c(b"  "),
        c(b"n"),
        c(b"L"),
        c(b"G"),
        c(b"Y"),
        c(b"H"),
        devanagari,
        c(b"I") - devanagari,
        c(b"V"),
        c(b"P"),
        c(b"C"),
        c(b"K"),
        c(b"E"),
        1,
    )


# ----------------------------------------------------------------------------- calibrations

ImageRule = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """How one family counts: the fitted estimate and its chat framing."""

    reference: str
    """The tokenizer the estimate was fitted against (``docs/context.md``)."""
    coef: tuple[float, ...]
    """Tokens per unit of each of :data:`FEATURES`."""
    error: float
    """Measured bound: on the corpus, ``|estimate - reference| <= error·reference``
    for every text of 20 reference tokens or more, within 8 tokens below that
    (``other``: under-estimates only)."""
    p95: float
    """95th percentile of the relative error on the corpus: the default margin kept
    when a decision rests on an estimate."""
    per_message: int
    priming: int
    per_name: int = 1
    tools: int = 12
    """Fixed cost when tool definitions are present (OpenAI's ``func_end``; Anthropic's
    tool-use system prompt)."""
    image: ImageRule = "openai"


# Fitted by tests/data/make_context_corpus.py --fit (non-negative least squares on the
# relative error, every corpus text) and measured on the corpus (docs/context.md): the
# coefficients, the worst relative error over texts of 20 reference tokens or more and
# the 95th percentile (the default trimming margin), per family, in coefficients.json.

_FITS_FILE = "coefficients.json"


def _load_fits() -> Mapping[Family, tuple[tuple[float, ...], float, float]]:
    data = orjson.loads(
        resources.files(__package__ or "brace.context").joinpath(_FITS_FILE).read_bytes()
    )
    fits: dict[Family, tuple[tuple[float, ...], float, float]] = {}
    for family in FAMILIES:
        entry = data["families"][family]
        coef = entry["coef"]
        if sorted(coef) != sorted(FEATURES):
            raise RuntimeError(
                f"{_FITS_FILE}: the {family} coefficients are not fitted on FEATURES; "
                "refit with tests/data/make_context_corpus.py --fit"
            )
        fits[family] = (tuple(float(coef[f]) for f in FEATURES), entry["error"], entry["p95"])
    return fits


_FITS = _load_fits()


def _cal(family: Family, reference: str, **framing: Any) -> Calibration:
    coef, error, p95 = _FITS[family]
    return Calibration(reference, coef, error, p95, **framing)


CALIBRATIONS: Mapping[Family, Calibration] = {
    # OpenAI's cookbook: 3 per message (+ the role's own token), 1 per name, 3 for the
    # reply; tools as in its num_tokens_for_tools (func_end 12).
    "openai": _cal("openai", "o200k_base", per_message=3, priming=3),
    # Claude's tokenizer is not public: fitted against the legacy Claude tokenizer, the
    # best offline reference.  Tools: Anthropic's documented tool-use system prompt
    # (346 tokens for Claude 3.5 and later with tool_choice auto).
    "anthropic": _cal(
        "anthropic",
        "legacy public Claude tokenizer",
        per_message=4,
        priming=3,
        tools=346,
        image="anthropic",
    ),
    # Llama 3: <|start_header_id|>role<|end_header_id|>\n\n … <|eot_id|>; BOS + reply header.
    "llama": _cal(
        "llama", "cl100k_base (Llama 3's vocabulary extends it)", per_message=4, priming=5
    ),
    # ChatML: <|im_start|>role\n … <|im_end|>\n; the reply primed with <|im_start|>assistant\n.
    "qwen": _cal("qwen", "Qwen's vocabulary (qwen.tiktoken)", per_message=4, priming=3),
    # [INST] … [/INST], … </s>; BOS once.
    "mistral": _cal("mistral", "tekken_240911", per_message=3, priming=1),
    # Unknown tokenizer: per feature, the largest coefficient of the families above,
    # so that the estimate errs high.
    "other": _cal("other", "every reference above", per_message=4, priming=3),
}


def _estimate(text: str, coef: Sequence[float]) -> int:
    if not text:
        return 0
    total = 0.0
    for k, n in zip(coef, text_features(text), strict=True):
        if n:
            total += k * n
    return max(1, round(total))


def count_text_tokens(text: str, *, family: Family, encoding: Encoding | None = None) -> int:
    """Tokens of a plain text: exact with an encoding (``openai`` only), else estimated."""
    if encoding is not None and family == "openai":
        return len(encoding.encode_ordinary(text)) if text else 0
    return _estimate(text, CALIBRATIONS[family].coef)


# ----------------------------------------------------------------------------- images


def _image_size(url: str) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG ``data:`` URL (``None`` otherwise)."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, 100)
    if comma < 0 or ";base64" not in url[:comma]:
        return None
    head = url[comma + 1 : comma + 1 + 65536]
    head = head[: len(head) - len(head) % 4]
    try:
        data = base64.b64decode(head)
    except (binascii.Error, ValueError):
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _image_tokens(part: Mapping[str, Any], rule: ImageRule) -> int:
    spec = part.get("image_url")
    url, detail = "", "auto"
    if isinstance(spec, Mapping):
        url = _str(spec.get("url"))
        detail = _str(spec.get("detail")) or "auto"
    elif isinstance(spec, str):
        url = spec
    size = _image_size(url) if url else None
    if rule == "anthropic":
        # Anthropic: about width·height/750, the image first fitted in 1568 px.
        if size is None:
            return 1600
        w, h = float(size[0]), float(size[1])
        scale = min(1.0, 1568 / max(w, h, 1), math.sqrt(1_150_000 / max(w * h, 1)))
        return max(1, math.ceil(w * scale * h * scale / 750))
    if detail == "low":
        return 85
    if size is None:
        return 765
    w, h = float(size[0]), float(size[1])
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


# ----------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class PromptCount:
    """A body's prompt tokens and how they were counted."""

    tokens: int
    exact: bool
    """Text counted with the real tokenizer (framing, tools and images follow
    documented rules even then)."""
    images: int = 0
    uncounted_parts: int = 0
    """Content parts of an unknown type (audio, files...), not counted."""


class _Tally:
    __slots__ = ("calibration", "encoding", "family", "images", "uncounted")

    def __init__(self, family: Family, encoding: Encoding | None) -> None:
        self.family = family
        self.encoding = encoding if family == "openai" else None
        self.calibration = CALIBRATIONS[family]
        self.images = 0
        self.uncounted = 0

    def text(self, text: str) -> int:
        return count_text_tokens(text, family=self.family, encoding=self.encoding)

    def content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.text(content)
        if not isinstance(content, list):
            return 0 if content is None else self.text(_json(content))
        total = 0
        for part in content:
            if isinstance(part, str):
                total += self.text(part)
                continue
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text", "refusal"):
                value = part.get("text", part.get("refusal"))
                total += self.text(value) if isinstance(value, str) else 0
            elif kind in ("image_url", "input_image"):
                self.images += 1
                total += _image_tokens(part, self.calibration.image)
            else:
                self.uncounted += 1
        return total

    def message(self, msg: Any) -> int:
        cal = self.calibration
        if not isinstance(msg, Mapping):
            return cal.per_message
        total = cal.per_message
        role = msg.get("role")
        if isinstance(role, str):
            total += self.text(role)
        total += self.content(msg.get("content"))
        name = msg.get("name")
        if isinstance(name, str) and name:
            total += cal.per_name + self.text(name)
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(fn, Mapping):
                    total += (
                        3 + self.text(_str(fn.get("name"))) + self.text(_str(fn.get("arguments")))
                    )
        call = msg.get("function_call")
        if isinstance(call, Mapping):
            total += 3 + self.text(_str(call.get("name"))) + self.text(_str(call.get("arguments")))
        return total

    def tools(self, body: Mapping[str, Any]) -> int:
        tools = body.get("tools")
        functions: list[Any] = []
        if isinstance(tools, list):
            functions = [t.get("function") for t in tools if isinstance(t, Mapping)]
        legacy = body.get("functions")
        if isinstance(legacy, list):
            functions.extend(legacy)
        functions = [f for f in functions if isinstance(f, Mapping)]
        if not functions:
            return 0
        # OpenAI's cookbook (num_tokens_for_tools): func_init 7, prop_init 3, prop_key 3,
        # enum_init -3, enum_item 3, func_end 12.  Nested schemas are counted as JSON.
        total = self.calibration.tools
        for fn in functions:
            desc = _str(fn.get("description")).removesuffix(".")
            total += 7 + self.text(f"{_str(fn.get('name'))}:{desc}")
            params = fn.get("parameters")
            props = params.get("properties") if isinstance(params, Mapping) else None
            if not isinstance(props, Mapping) or not props:
                continue
            total += 3
            for key, prop in props.items():
                total += 3
                if not isinstance(prop, Mapping):
                    total += self.text(f"{key}:{_json(prop)}")
                    continue
                enum = prop.get("enum")
                if isinstance(enum, list):
                    total -= 3
                    for item in enum:
                        total += 3 + self.text(item if isinstance(item, str) else _json(item))
                pdesc = _str(prop.get("description")).removesuffix(".")
                total += self.text(f"{key}:{_str(prop.get('type'))}:{pdesc}")
                nested = {k: v for k, v in prop.items() if k in ("properties", "items", "anyOf")}
                if nested:
                    total += self.text(_json(nested))
        return total

    def fixed(self, body: Mapping[str, Any]) -> int:
        total = self.calibration.priming + self.tools(body)
        fmt = body.get("response_format")
        if isinstance(fmt, Mapping) and isinstance(fmt.get("json_schema"), Mapping):
            total += self.text(_json(fmt["json_schema"]))
        return total


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def count_message_tokens(
    message: Mapping[str, Any], *, family: Family, encoding: Encoding | None = None
) -> int:
    """One message's tokens, framing included."""
    return _Tally(family, encoding).message(message)


def fixed_prompt_tokens(
    body: Mapping[str, Any], *, family: Family, encoding: Encoding | None = None
) -> int:
    """The tokens of a body that are not in its messages: reply priming, tool
    definitions, a response-format schema."""
    return _Tally(family, encoding).fixed(body)


def count_prompt(
    body: Mapping[str, Any], *, family: Family, encoding: Encoding | None = None
) -> PromptCount:
    """The prompt tokens of an OpenAI chat body, with how they were counted."""
    tally = _Tally(family, encoding)
    messages = body.get("messages")
    total = tally.fixed(body)
    if isinstance(messages, list):
        total += sum(tally.message(m) for m in messages)
    return PromptCount(
        total,
        exact=tally.encoding is not None,
        images=tally.images,
        uncounted_parts=tally.uncounted,
    )


def count_prompt_tokens(
    body: Mapping[str, Any], *, family: Family, encoding: Encoding | None = None
) -> int:
    """The prompt tokens of an OpenAI chat body (see the module docstring)."""
    return count_prompt(body, family=family, encoding=encoding).tokens


# ----------------------------------------------------------------------------- families


_OPENAI_PREFIXES = ("gpt-", "gpt4", "chatgpt", "o1", "o3", "o4", "ft:gpt", "text-", "davinci")


def family_for(provider: str, model: str) -> Family:
    """The tokenizer family of a deployment, from its model name (then its provider
    preset's, ``brace.presets``)."""
    m = model.lower().rsplit("/", 1)[-1]
    full = model.lower()
    if "claude" in full:
        return "anthropic"
    if "llama" in full:
        return "llama"
    if "qwen" in full or "qwq" in full:
        return "qwen"
    if any(
        k in full for k in ("mistral", "mixtral", "codestral", "pixtral", "magistral", "devstral")
    ):
        return "mistral"
    if m.startswith(_OPENAI_PREFIXES):
        return "openai"
    preset = PRESETS.get(provider)
    return preset.family if preset is not None else "other"
