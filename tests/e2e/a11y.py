"""Accessibility checks for the browser tests: axe-core, injected into a Playwright page.

axe-core (Deque, MPL-2.0) comes from the npm registry, pinned to :data:`AXE_CORE_VERSION`;
``scripts/test.sh`` installs it into ``.cache/npm`` (git-ignored) when it is missing or another
version. Nothing is downloaded at test run time: a missing copy fails the test with the command
that installs it.

A view is checked with one call each, after the test has brought it on screen::

    from tests.e2e.a11y import assert_accessible, assert_keyboard_reachable

    await assert_accessible(page, "pre-join", screenshot_dir=screenshot_dir)
    await assert_keyboard_reachable(page, "pre-join")

It runs ``axe.run()`` on the whole document with the WCAG 2.0/2.1/2.2 A and AA rules and the
best-practice rules, and fails on every violation of impact ``serious`` or ``critical``, listing
the rule id, impact, the target CSS selectors, the failure summary and the help URL of each.
Moderate and minor findings are returned, not asserted.

:func:`assert_keyboard_reachable` presses Tab from the top of the page and fails unless every
visible, enabled control gets the focus (no control out of the tab order, no keyboard trap).
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
        # Not page.add_script_tag(path=...): it adds an inline <script>, which the page's CSP
        # (script-src 'self', signaling/accounts.py) refuses, and the tests must not weaken the
        # CSP (bypass_csp would check another page). Playwright's evaluate runs the same file
        # through the DevTools protocol, which the CSP does not govern: the same global `axe`.
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


# List every control a person could operate (visible, enabled, not inert, inside the open modal
# dialog if there is one) in window.__kbdControls; return a description of each. No attribute
# is added to the page: a view that re-renders a part whose HTML changed (the participants list
# compares rows by their HTML) would replace the very controls under test. Elements with
# tabindex="-1" that are not controls (headings that receive focus on purpose) are left out;
# a control with tabindex="-1" stays in, and so is reported as unreachable.
_MARK_CONTROLS_JS = """
() => {
  const CONTROL = 'a[href], button, input:not([type="hidden"]), select, textarea, summary,'
    + ' [contenteditable="true"], [tabindex]:not([tabindex="-1"])';
  const modal = document.querySelector('dialog:modal');
  const root = modal || document;
  const out = [];
  const radioGroups = new Set();
  const controls = [];
  for (const el of root.querySelectorAll(CONTROL)) {
    if (el.disabled || el.closest('[inert]')) continue;
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: false })) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (el.type === 'radio' && el.name) {
      // One stop per radio group (arrow keys move inside it).
      if (radioGroups.has(el.name)) continue;
      radioGroups.add(el.name);
    }
    const name = el.getAttribute('aria-label') || el.textContent.trim().slice(0, 40)
      || el.getAttribute('title') || el.getAttribute('name') || '';
    const what = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}`
      + `${name ? ' "' + name + '"' : ''}`;
    controls.push(el);
    out.push(what);
  }
  window.__kbdControls = controls;
  return out;
}
"""

# Which listed control has the focus (its index), or -1. A radio counts for its group.
_FOCUSED_INDEX_JS = """
() => {
  const el = document.activeElement;
  const controls = window.__kbdControls || [];
  if (!el) return -1;
  const index = controls.indexOf(el);
  if (index >= 0) return index;
  if (el.type === 'radio' && el.name) {
    return controls.findIndex((c) => c.type === 'radio' && c.name === el.name);
  }
  return -1;
}
"""


async def assert_keyboard_reachable(page: Any, name: str) -> list[str]:
    """Fail unless Tab (from the top of the page) reaches every control on screen.

    Controls are links, buttons, form fields and elements with a non-negative ``tabindex``
    that are visible, enabled and not ``inert`` (inside the open modal ``<dialog>`` when one
    is shown); one stop counts for a whole radio group. Tab is pressed at most
    ``2 * controls + 5`` times. A control that is never reached (``tabindex="-1"``, or behind
    a keyboard trap that holds the focus) is listed in the failure with its tag, id and name
    (WCAG 2.1.1 Keyboard, 2.1.2 No Keyboard Trap). Returns the controls in the order Tab
    reached them.
    """
    controls: list[str] = await page.evaluate(_MARK_CONTROLS_JS)
    if not controls:
        pytest.fail(f"the {name} view has no control to reach by keyboard")
    # Start from the top of the page, not from whatever the view focused: focus a (not
    # tabbable) marker at the start of <body>; Tab goes on from there. (After a blur() the
    # browser would go on from the blurred element and wrap through its own UI.)
    await page.evaluate(
        "() => { const start = document.createElement('span'); start.id = 'kbd-start';"
        " start.tabIndex = -1; document.body.prepend(start); start.focus(); }"
    )
    order: list[int] = []
    for _ in range(2 * len(controls) + 5):
        await page.keyboard.press("Tab")
        index: int = await page.evaluate(_FOCUSED_INDEX_JS)
        if index >= 0 and index not in order:
            order.append(index)
        if len(order) == len(controls):
            break
    await page.evaluate(
        "() => { delete window.__kbdControls;"
        " const start = document.getElementById('kbd-start'); if (start) start.remove(); }"
    )
    missing = [controls[i] for i in range(len(controls)) if i not in order]
    if missing:
        reached = [controls[i] for i in order]
        pytest.fail(
            f"the {name} view: Tab never reaches {len(missing)} of {len(controls)} controls:\n"
            + "\n".join(f"    {m}" for m in missing)
            + f"\n  reached, in order: {reached}",
            pytrace=False,
        )
    return [controls[i] for i in order]
