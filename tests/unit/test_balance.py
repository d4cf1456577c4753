from collections import Counter

import pytest

from brace.policies.balance import Balancer, Target
from brace.stack import Request, Response


async def answer(req: Request) -> Response:
    return Response(b"{}")


def test_smooth_weighted_round_robin_exact_shares() -> None:
    b = Balancer([Target("a", 5, answer), Target("b", 1, answer), Target("c", 1, answer)])
    picks = [b.pick().id for _ in range(70)]
    assert Counter(picks) == {"a": 50, "b": 10, "c": 10}
    # smooth: the heavy target never takes more than its share in a row
    assert "a" * 6 not in "".join(picks)


def test_single_target() -> None:
    b = Balancer([Target("only", 1, answer)])
    assert {b.pick().id for _ in range(5)} == {"only"}


def test_empty_is_an_error() -> None:
    with pytest.raises(ValueError):
        Balancer([])


async def test_records_deployment_on_request() -> None:
    b = Balancer([Target("a", 1, answer), Target("b", 1, answer)])
    seen = []
    for _ in range(4):
        req = Request("chat", "m", {})
        await b(req)
        seen.append(req.meta["deployment"])
    assert seen == ["a", "b", "a", "b"]
