"""Accessibility checks for the browser tests: axe-core, injected into a Playwright page.

axe-core (Deque, MPL-2.0) comes from the npm registry, pinned to :data:`AXE_CORE_VERSION`;
``scripts/test.sh`` installs it into ``.cache/npm`` (git-ignored) when it is missing or another
version. Nothing is downloaded at test run time: a missing copy fails the test with the command
that installs it.

A view is checked with one call, after the test has brought it on screen::

    from tests.e2e.a11y import assert_accessible

    await assert_accessible(page, "pre-join", screenshot_dir=screenshot_dir)

It runs ``axe.run()`` on the whole document with the WCAG 2.0/2.1/2.2 A and AA rules and the
best-practice rules, and fails on every violation of impact ``serious`` or ``critical``, listing
the rule id, impact, the target CSS selectors, the failure summary and the help URL of each.
Moderate and minor findings are returned, not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

AXE_CORE_VERSION = "4.14.1"
"""The axe-core release the tests run (``scripts/test.sh`` reads this line)."""

AXE_JS = REPO_ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
"""Where ``scripts/test.sh`` installs it: ``npm install --prefix .cache/npm axe-core@X``."""

FAILING_IMPACTS = frozenset({"serious", "critical"})
"""axe-core impact levels that fail a test (the others are ``moderate`` and ``minor``)."""

RUN_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
"""The rule sets axe runs: WCAG 2.0, 2.1 and 2.2 levels A and AA, and axe's best practices."""

# axe.run's options and the result, trimmed to what a failure report needs (a full result is
# megabytes: every passing node of every rule).
_RUN_JS = """
async ([context, tags, disabled]) => {
  const rules = {};
  for (const id of disabled) rules[id] = { enabled: false };
  const result = await window.axe.run(context || document, {
    runOnly: { type: 'tag', values: tags },
    rules,
    resultTypes: ['violations'],
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({
      target: n.target,
      impact: n.impact,
      summary: n.failureSummary || '',
      html: n.html,
    })),
  }));
}
"""


def axe_script() -> Path:
    """The pinned ``axe.min.js``; fails the test (never downloads) when it is not installed."""
    package = AXE_JS.parent / "package.json"
    if not AXE_JS.is_file() or not package.is_file():
        pytest.fail(
            f"axe-core is not installed at {AXE_JS.parent}: run scripts/test.sh, or "
            f"npm install --no-save --prefix .cache/npm axe-core@{AXE_CORE_VERSION}"
        )
    version = json.loads(package.read_text())["version"]
    if version != AXE_CORE_VERSION:
        pytest.fail(f"axe-core {version} is installed, the tests pin {AXE_CORE_VERSION}")
    return AXE_JS


async def axe_violations(
    page: Any, *, context: str | None = None, disable: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Run axe-core on ``page`` (a Playwright page) and return its violations.

    ``context`` is a CSS selector to check only part of the page (default: the document);
    ``disable`` lists rule ids to skip. Each violation is ``{id, impact, help, helpUrl,
    nodes: [{target: [selector, ...], impact, summary, html}]}`` (axe-core's result format,
    https://github.com/dequelabs/axe-core/blob/develop/doc/API.md#results-object).
    """
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        # The page's CSP (script-src 'self') blocks inline <script> tags, so the script tag
        # Playwright adds would not run; Playwright's evaluate runs through the DevTools
        # protocol, which the page's CSP does not govern. Same source, same global `axe`.
        try:
            await page.add_script_tag(path=str(axe_script()))
        except Exception:
            await page.evaluate(axe_script().read_text())
    violations: list[dict[str, Any]] = await page.evaluate(
        _RUN_JS, [context, RUN_TAGS, list(disable)]
    )
    return violations


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One readable block per violation: rule id, impact, help and URL, then each node's
    target selectors and axe's summary of what to fix."""
    lines: list[str] = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            target = " >> ".join(" ".join(t) if isinstance(t, list) else t for t in node["target"])
            summary = " ".join(node["summary"].split())
            lines.append(f"    at {target}: {summary}")
    return "\n".join(lines)


async def assert_accessible(
    page: Any,
    name: str,
    *,
    screenshot_dir: Path | None = None,
    context: str | None = None,
    disable: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Fail the test when axe-core finds a ``serious`` or ``critical`` violation on ``page``.

    ``name`` names the view in the failure message and the screenshot
    (``<screenshot_dir>/a11y-<name>.png``, taken before the check when a directory is given).
    ``context`` and ``disable`` are passed to :func:`axe_violations`. Returns the violations
    of lower impact (moderate, minor), for a test that wants to look at them.
    """
    if screenshot_dir is not None:
        await page.screenshot(path=str(screenshot_dir / f"a11y-{name}.png"))
    violations = await axe_violations(page, context=context, disable=disable)
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    if failing:
        pytest.fail(
            f"axe-core {AXE_CORE_VERSION}: {len(failing)} serious/critical accessibility "
            f"violation(s) on the {name} view:\n{format_violations(failing)}",
            pytrace=False,
        )
    return [v for v in violations if v["impact"] not in FAILING_IMPACTS]
