"""The console's foundation in a real browser (Chromium through Playwright): sign-in, the layout,
the Content Security Policy, and the shared chart helper (static/console/charts.js)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_signs_in_and_shows_the_layout_without_errors(console_page, roles):
    console_page.goto("/t/acme/keys/")
    assert "/login/?next=/t/acme/keys/" in console_page.page.url
    console_page.sign_in("owner@acme.test", roles.password, next_path="/t/acme/keys/")
    page = console_page.page
    assert page.url.endswith("/t/acme/keys/")
    assert page.locator(".sidenav a.active").inner_text() == "Keys"
    assert "Acme" in page.locator(".switcher summary").inner_text()
    page.click(".usermenu summary")
    with page.expect_navigation():
        page.click("text=Sign out")
    assert "/login/" in page.url
    console_page.assert_clean()


def test_a_wrong_password_shows_an_inline_error(console_page, roles):
    console_page.goto("/login/")
    console_page.page.fill("#id_username", "owner@acme.test")
    console_page.page.fill("#id_password", "not-the-password")
    with console_page.page.expect_navigation():
        console_page.page.click("button[type=submit]")
    assert console_page.page.locator(".form-errors").is_visible()
    console_page.assert_clean()


def test_the_policy_blocks_an_inline_script_and_the_harness_sees_it(console_page, roles):
    """The CSP watch itself works: an injected inline script is refused and reported."""
    console_page.goto("/login/")
    console_page.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }"
    )
    assert console_page.page.evaluate("window.__ran") is None
    assert console_page.csp_violations


def test_the_chart_helper_draws_line_bar_and_empty_charts(console_page, roles):
    console_page.sign_in("viewer@acme.test", roles.password)
    page = console_page.page
    page.add_script_tag(url="/static/vendor/chart.umd.min.js")
    page.add_script_tag(url="/static/console/charts.js")
    page.evaluate(
        """() => {
          for (const id of ["line", "bar", "empty"]) {
            const box = document.createElement("div"); box.className = "chart";
            const canvas = document.createElement("canvas"); canvas.id = id;
            box.appendChild(canvas); document.querySelector("main").appendChild(box);
          }
          const labels = ["12-01", "12-02", "12-03"];
          window.charts = [
            TollhouseCharts.draw(document.getElementById("line"), {type: "line", labels, unit: "USD",
              series: [{label: "Spend", data: [0.5, 1.25, 2]}, {label: "Budget", data: [3, 3, 3], dashed: true}],
              markers: [{at: "12-02", text: "50 % alert"}]}),
            TollhouseCharts.draw(document.getElementById("bar"), {type: "bar", labels, unit: "requests", stacked: true,
              series: [{label: "ok", data: [5, 7, 9]}, {label: "errors", data: [1, 0, 2]}]}),
            TollhouseCharts.draw(document.getElementById("empty"), {labels: [], unit: "ms", series: []}),
          ];
        }"""
    )
    assert console_page.canvas_drawn("#line") and console_page.canvas_drawn("#bar")
    assert console_page.canvas_drawn("#empty")  # says "No data in this range yet"
    assert page.evaluate("TollhouseCharts.format(1234.5, 'USD')") == "$1,234.50"
    assert page.evaluate("TollhouseCharts.format(250, 'ms')") == "250 ms"
    assert page.evaluate("window.charts[0].options.plugins.legend.display") is True
    console_page.assert_clean()


def test_the_admin_works_under_the_same_policy(console_page, roles, django_user_model):
    """The admin's own pages (list, add, the issued-key page) break no rule of the CSP either."""
    django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-12345")
    page = console_page.page
    console_page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root-12345")
    with page.expect_navigation():
        page.click("input[type=submit]")
    for path in ("/admin/", "/admin/accounts/apikey/", "/admin/accounts/auditentry/"):
        console_page.goto(path)
    console_page.goto("/admin/accounts/apikey/add/")
    page.select_option("#id_tenant", label="Acme")
    page.fill("#id_name", "from-the-admin")
    with page.expect_navigation():
        page.click("input[name=_save]")
    assert page.input_value("#issued-key").startswith("th-")
    console_page.assert_clean()
