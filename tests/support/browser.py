"""Browser tests: Playwright for Python driving Debian's Chromium (/usr/bin/chromium, from the
`chromium` package; never a downloaded browser).

Fixtures (tests/conftest.py):
- `browser`: ONE Chromium per test session.
- `console_page`: a fresh browser context and page for one test, pointed at the live server (the
  real ASGI app, /v1 gateway included: the `gateway_server` fixture), recording JavaScript errors
  and CSP violations. Tests that use it need the data they create visible to the server thread:
  request `transactional_db` (or a fixture that does, such as `world`).

Helpers on `ConsolePage`: `.goto(path)`, `.sign_in(email, password)`, `.screenshot(name)` (to
docs/screenshots/<name>.png), `.canvas_drawn(selector)`, `.assert_clean()` (no console errors, no
page errors, no CSP violations), and `.errors` / `.csp_violations` to look at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TOLLHOUSE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Runs in every page before its own scripts: records CSP violations where the test can read them.
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI,
                               source: e.sourceFile, line: e.lineNumber, sample: e.sample});
});
"""


def launch(playwright: Any) -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (CI does)")
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        # Containers run as root without user namespaces; /dev/shm is often tiny there.
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )


@dataclass
class ConsolePage:
    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)
    csp_from_console: list[str] = field(default_factory=list)

    def watch(self) -> ConsolePage:
        def on_console(message: Any) -> None:
            if message.type == "error":
                where = (message.location or {}).get("url", "")
                text = f"{message.text} ({where})" if where else message.text
                (self.csp_from_console if "Content Security Policy" in text else self.errors).append(text)

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.add_init_script(_WATCH_CSP)
        return self

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str) -> Any:
        return self.page.goto(self.url(path))

    def sign_in(self, email: str, password: str, *, next_path: str = "") -> None:
        self.goto("/login/" + (f"?next={next_path}" if next_path else ""))
        self.page.fill("#id_username", email)
        self.page.fill("#id_password", password)
        with self.page.expect_navigation():
            self.page.click("button[type=submit]")
        assert "/login/" not in self.page.url, "sign-in failed: " + self.page.inner_text("main")

    @property
    def csp_violations(self) -> list[Any]:
        try:
            recorded = self.page.evaluate("window.__cspViolations || []")
        except Exception:  # the page is navigating; the console list still has them
            recorded = []
        return [*recorded, *self.csp_from_console]

    def assert_clean(self) -> None:
        assert self.errors == [], f"JavaScript errors: {self.errors}"
        assert self.csp_violations == [], f"CSP violations: {self.csp_violations}"

    def canvas_drawn(self, selector: str = "canvas") -> bool:
        """Has every canvas matching `selector` some non-transparent pixel (and is there one)?"""
        return bool(
            self.page.evaluate(
                """(selector) => {
                  const canvases = [...document.querySelectorAll(selector)];
                  return canvases.length > 0 && canvases.every((c) => {
                    if (!c.width || !c.height) return false;
                    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
                    return false;
                  });
                }""",
                selector,
            )
        )

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path
