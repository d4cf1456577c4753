from brace.stack import Handler, Request, Response, StreamResponse, build_stack


class Tag:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def wrap(self, inner: Handler) -> Handler:
        async def handle(req: Request) -> Response | StreamResponse:
            self.log.append(f"{self.name}>")
            res = await inner(req)
            self.log.append(f"<{self.name}")
            return res

        return handle


async def test_first_policy_sees_request_first() -> None:
    log: list[str] = []

    async def provider(req: Request) -> Response:
        log.append("provider")
        return Response(b'{"ok":true}')

    stack = build_stack(provider, [Tag("outer", log), Tag("inner", log)])
    res = await stack(Request("chat", "m", {}))
    assert isinstance(res, Response) and res.json() == {"ok": True}
    assert log == ["outer>", "inner>", "provider", "<inner", "<outer"]


async def test_stream_aclose_runs_generator_cleanup_and_close_callback() -> None:
    events: list[str] = []

    async def gen():  # type: ignore[no-untyped-def]
        try:
            yield b"1"
            yield b"2"
        finally:
            events.append("gen-finally")

    async def close() -> None:
        events.append("closed")

    s = StreamResponse(gen(), close=close)
    assert await anext(s.chunks) == b"1"
    await s.aclose()
    await s.aclose()  # idempotent
    assert events == ["gen-finally", "closed"]
