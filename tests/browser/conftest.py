"""Browser tests of the dashboard: real headless Chromium (Debian's ``chromium``
package) driven by Playwright, against the real ``/ui`` route.

Playwright's own browser download is never used: install Chromium with
``apt-get install -y chromium``.  Without ``/usr/bin/chromium`` these tests skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import ServerThread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("BRACE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: playwright's sync API keeps an event loop running in the main
    # thread while it is open, which would break every asyncio test that follows.
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(the dashboard's browser tests drive a real browser)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    """A page and what went wrong in it (console errors, uncaught exceptions)."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def unexpected_errors(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(5000)
    t = Tab(page)

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            t.errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: t.errors.append(f"pageerror: {exc}"))
    try:
        yield t
    finally:
        context.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[ServerThread]:
    st = ServerThread()
    try:
        yield st
    finally:
        st.close()
