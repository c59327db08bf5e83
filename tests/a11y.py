"""Accessibility checks by a tool: axe-core (npm, `node_modules/axe-core`) run inside a
Playwright page, against WCAG 2.1 A and AA.

    from tests.a11y import axe_violations, describe

    problems = axe_violations(page)                       # serious and critical only
    assert problems == [], describe(problems)

axe-core walks open shadow roots (the payment dialog renders in one); a node inside a
shadow root has a nested `target`, e.g. `[[".paymentapp-host", ".pa-pay"]]`.
The script is injected through the DevTools protocol (`page.evaluate`), so the pages'
strict Content-Security-Policy (`script-src 'self'`) does not have to be relaxed.
"""

from __future__ import annotations

from functools import cache

from tests import services

AXE_JS = services.ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
IMPACTS = ("minor", "moderate", "serious", "critical")


@cache
def axe_source() -> str:
    if not AXE_JS.is_file():
        services.unavailable(f"axe-core is not installed ({AXE_JS}); run `npm ci`")
    return AXE_JS.read_text(encoding="utf-8")


def inject_axe(page) -> None:
    """Load axe-core into the page (once per document)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;undefined")


def axe_run(page, tags=WCAG21_AA, context=None) -> dict:
    """axe-core's full results (`violations`, `passes`, `incomplete`, …) for the page as it
    is now; `context` narrows the scan (axe's include/exclude object), default the page."""
    inject_axe(page)
    return page.evaluate(
        """async ([context, tags]) => {
            const results = await window.axe.run(context || document, {
                runOnly: {type: "tag", values: tags},
            });
            const slim = (rule) => ({
                id: rule.id, impact: rule.impact, help: rule.help, tags: rule.tags,
                nodes: rule.nodes.map((n) => ({
                    target: n.target, html: n.html, impact: n.impact,
                    summary: n.failureSummary,
                })),
            });
            return {
                violations: results.violations.map(slim),
                passes: results.passes.map(slim),
                incomplete: results.incomplete.map(slim),
            };
        }""",
        [context, list(tags)],
    )


def axe_violations(page, impact=("serious", "critical"), tags=WCAG21_AA, context=None) -> list:
    """The WCAG 2.1 AA violations of the page (by default only serious and critical ones),
    as `[{id, impact, help, tags, nodes: [{target, html, impact, summary}]}]`; pass
    `impact=None` for every impact."""
    violations = axe_run(page, tags, context)["violations"]
    if impact is None:
        return violations
    return [v for v in violations if v["impact"] in impact]


def in_shadow(node: dict) -> bool:
    """Is this axe result node inside a shadow root (its target is a selector chain)?"""
    return any(isinstance(part, list) for part in node["target"])


def describe(violations: list) -> str:
    """A readable report for an assertion message."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {(node.get('summary') or '').splitlines()[-1:]}")
    return "\n".join(lines) or "no violations"


def summary(violations: list) -> dict:
    """`{rule id: (impact, how many nodes)}`: short enough to log per page state."""
    return {v["id"]: (v["impact"], len(v["nodes"])) for v in violations}


VIEWPORTS = {"1280": {"width": 1280, "height": 800}, "375": {"width": 375, "height": 740}}


def page_is_sound(page, name: str, shot: str) -> None:
    """What every admin page must be at any width: no sideways scroll and no serious or
    critical axe violation. Saves a screenshot as test-artifacts/<shot>.png."""
    page.wait_for_load_state("load")
    artifacts = services.ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"{shot}.png"), full_page=True)
    widths = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )
    assert widths["scroll"] <= widths["inner"], f"{name}: the page is {widths['scroll']} px wide"
    serious = axe_violations(page)
    assert serious == [], f"{name}:\n{describe(serious)}"


def on_screen(page, locator, what: str) -> None:
    """Visible, and entirely within the viewport's width (measured once styles applied)."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    page.wait_for_load_state("load")
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, f"{what} is cut off: {box}"
