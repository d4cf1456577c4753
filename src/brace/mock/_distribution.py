"""Latency distributions, in milliseconds, sampled from an injected ``random.Random``.

Spec strings (CLI, YAML, ``/_mock/config``)::

    0 | 50 | 50ms | 1.5s        fixed value (a bare number is milliseconds)
    fixed(50)                   fixed value
    uniform(10,50)              uniform between lo and hi
    normal(100,20)              normal(mean, sd), clipped at 0
    lognormal(200,1500)         log-normal with the given median and 99th percentile
"""

from __future__ import annotations

import math
import random
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator

__all__ = ["Distribution", "parse_distribution"]

Kind = Literal["fixed", "uniform", "normal", "lognormal"]

_Z99 = 2.3263478740408408  # standard normal quantile at 0.99
_CALL = re.compile(r"^\s*(fixed|uniform|normal|lognormal)\s*\(([^)]*)\)\s*$")
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")
_ARITY = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2}


class Distribution(BaseModel):
    """A non-negative distribution of durations in milliseconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "fixed"
    a: float = 0.0
    b: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _from_spec(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("a distribution is a number of ms or a spec like uniform(10,50)")
        if isinstance(data, int | float):
            return {"kind": "fixed", "a": float(data)}
        if isinstance(data, str):
            return _spec_fields(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.a < 0 or self.b < 0:
            raise ValueError("distribution parameters must be >= 0")
        if self.kind == "uniform" and self.a > self.b:
            raise ValueError("uniform(lo,hi) needs lo <= hi")
        if self.kind == "lognormal" and not 0 < self.a <= self.b:
            raise ValueError("lognormal(median,p99) needs 0 < median <= p99")
        return self

    @model_serializer
    def _to_spec(self) -> str:
        return self.spec

    @property
    def spec(self) -> str:
        """The compact spec string that parses back to this distribution."""
        if self.kind == "fixed":
            return f"{self.a:g}"
        return f"{self.kind}({self.a:g},{self.b:g})"

    @property
    def is_zero(self) -> bool:
        """True when every sample is 0, so no random draw is needed."""
        return self.kind == "fixed" and self.a == 0.0

    def sample(self, rng: random.Random) -> float:
        """One sample in milliseconds (never negative). Fixed values draw nothing."""
        kind = self.kind
        if kind == "fixed":
            return self.a
        if kind == "uniform":
            return rng.uniform(self.a, self.b)
        if kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        mu = math.log(self.a)
        sigma = (math.log(self.b) - mu) / _Z99
        return rng.lognormvariate(mu, sigma)


def _spec_fields(spec: str) -> dict[str, Any]:
    number = _NUMBER.match(spec)
    if number:
        value = float(number.group(1))
        return {"kind": "fixed", "a": value * 1000 if number.group(2) == "s" else value}
    call = _CALL.match(spec)
    if not call:
        raise ValueError(
            f"bad distribution {spec!r}: use 50, fixed(50), uniform(lo,hi), "
            "normal(mean,sd) or lognormal(median,p99), all in ms"
        )
    kind = call.group(1)
    try:
        params = [float(p) for p in call.group(2).split(",")]
    except ValueError:
        raise ValueError(f"bad distribution {spec!r}: parameters must be numbers") from None
    if len(params) != _ARITY[kind]:
        raise ValueError(f"bad distribution {spec!r}: {kind} takes {_ARITY[kind]} parameter(s)")
    return {"kind": kind, "a": params[0], "b": params[1] if len(params) > 1 else 0.0}


def parse_distribution(spec: str | float) -> Distribution:
    """Parse a spec string (or a number of ms) into a :class:`Distribution`."""
    return Distribution.model_validate(spec)
