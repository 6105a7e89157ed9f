"""The HTML pages, read the way a person reads them: in headless Chromium, from a real server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("PPATCH_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required (PPATCH_REQUIRE_BROWSER=1)")
        pytest.skip("chromium or chromedriver is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ppatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={profile}", "--window-size=1200,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports land here
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name: str) -> None:
    """The whole page (up to 4,000 pixels tall), for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(max(int(height) + 140, 900), 4000))
    try:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    finally:
        driver.set_window_size(1200, 900)


def _console_problems(driver) -> list[str]:
    """Browser console errors since the last call: a CSP violation shows up here."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# What `ppatch train` records (client/train/pipeline.py), with figures a person can check.
EVALUATION = {
    "measured": "2026-11-28T10:00:00Z",
    "training_pairs": {"pairs": 191.0, "preference_accuracy": 0.9214659929275513},
    "training_prompts": {
        "suite": "toxicity",
        "prompts": 40,
        "primary": "toxicity_probability",
        "scorer": None,
        "systems": {
            "base": {"expected_max_toxicity": 0.4123, "toxicity_probability": 0.31},
            "base+patch": {"expected_max_toxicity": 0.2, "toxicity_probability": 0.0712},
            "reference": {"expected_max_toxicity": 0.1, "toxicity_probability": 0.05},
        },
    },
}
TRAINING = {
    "method": "soft prompt: SFT then DPO",
    "reference_model": {"id": "tiny-reference"},
    "data": {"source": "generated", "prompts": 40, "sft_examples": 48, "preference_pairs": 191},
}


@pytest.fixture
def site(acme, live_server, make_patch):
    script = "<script>alert(1)</script> fair"
    uploads = [
        make_patch(version="1.0.0", seed=1, evaluation={"toxicity_probability": 0.31}),
        make_patch(version="1.1.0", seed=2, evaluation=EVALUATION, training=TRAINING),
        make_patch(version="1.1.0", seed=3, fingerprint=FP_B),
        make_patch(name="acme/bias", domain="bias", summary=script, seed=4),
    ]
    for data in uploads:
        name = __import__("patchfmt").read_patch(data).manifest.name
        assert acme.upload(data, path=name).status_code == 201
    acme.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "over-refuses medical questions"},
        headers=acme.auth(scope="yank"),
    )
    return live_server


def test_package_list_and_search(browser, site, request) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#packages tbody tr")
    texts = [row.text for row in rows]
    assert any(text.startswith("acme/toxicity 1.1.0 toxicity") for text in texts), texts
    # The summary's markup is shown as text, never run.
    assert any("<script>alert(1)</script> fair" in text for text in texts), texts
    box = browser.find_element(By.NAME, "q")
    box.send_keys("bias")
    box.submit()
    from selenium.webdriver.support.ui import WebDriverWait

    # The results page, not rows of the page being left (they go stale under the test).
    WebDriverWait(browser, 10).until(
        lambda driver: (
            "q=bias" in driver.current_url
            and driver.execute_script("return document.readyState") == "complete"
        )
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#packages tbody tr")
    assert [row.text.split()[0] for row in rows] == ["acme/bias"]
    _screenshot(browser, f"registry-index-{request.node.callspec.id}")
    browser.get(site.url + "/?q=nothing-like-this")
    assert browser.find_element(By.ID, "no-results").text == "No patches match your search."


def test_package_page(browser, site, request) -> None:
    from selenium.webdriver.common.by import By

    browser.get_log("browser")
    browser.get(site.url + "/p/acme/toxicity")
    assert browser.find_element(By.TAG_NAME, "h1").text == "acme/toxicity"
    assert browser.find_element(By.ID, "domain").text == "toxicity"
    assert browser.find_element(By.ID, "summary").text == "Lowers toxicity of tiny-model"
    command = browser.find_element(By.ID, "install-command").text
    assert command == "ppatch install acme/toxicity@1.1.0 --model MODEL"
    assert browser.find_element(By.ID, "copy-install").is_displayed()
    notices = [n.text for n in browser.find_elements(By.CLASS_NAME, "yank-notice")]
    assert notices == ["Version 1.0.0 was yanked: over-refuses medical questions"]
    # The base model once, with its own copy button; the other base model is a link.
    fingerprint = browser.find_element(By.ID, "base-fingerprint").text
    assert fingerprint == FP_A
    assert browser.find_element(By.ID, "copy-fingerprint").is_displayed()
    assert FP_B in browser.find_element(By.ID, "other-bases").text
    # The suite as a table: systems against measures, primary first, three digits.
    suite = browser.find_element(By.ID, "evaluation-1")
    header = [cell.text for cell in suite.find_elements(By.CSS_SELECTOR, "thead th")]
    assert header == ["System", "toxicity_probability (primary)", "expected_max_toxicity"]
    rows = [row.text for row in suite.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert rows == ["base 0.310 0.412", "base+patch 0.0712 0.200", "reference 0.0500 0.100"]
    pairs = browser.find_element(By.ID, "evaluation-2").text
    assert "base+patch 191 0.921" in pairs
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "{'" not in page and "0.9214659929275513" not in page
    assert FP_A not in suite.text
    # The bar chart: one bar per system and measure, drawn and labelled.
    chart = browser.find_element(By.ID, "chart-1")
    assert len(chart.find_elements(By.TAG_NAME, "rect")) == 6
    assert chart.size["height"] > 50 and chart.size["width"] > 300
    assert "base+patch 0.0712" in chart.text
    training = browser.find_element(By.ID, "training").text
    assert "soft prompt: SFT then DPO" in training and "tiny-reference" in training
    assert "preference pairs\n191" in training or "preference pairs 191" in training
    assert "(active)" in browser.find_element(By.ID, "signing-key").text
    versions = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")]
    assert versions[0].startswith("1.1.0 available") and FP_B in versions[0]
    assert versions[1].startswith("1.0.0 yanked: over-refuses medical questions")
    # Styles and the copy script load under the strict CSP, with nothing refused.
    assert browser.find_element(By.ID, "copy-install").value_of_css_property("cursor")
    assert browser.execute_script("return document.styleSheets.length") == 1
    assert _console_problems(browser) == []
    _screenshot(browser, f"registry-package-{request.node.callspec.id}")


def test_api_docs_render_from_the_registrys_own_files(browser, site, request) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    browser.get(site.url + "/docs")
    title = WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .title"))
    )
    assert title.text.startswith("ppatch registry")
    assert "/api/v1/search" in browser.find_element(By.ID, "swagger-ui").text
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(name.startswith(site.url) for name in resources), resources
    assert _console_problems(browser) == []
    _screenshot(browser, f"registry-docs-{request.node.callspec.id}")


def test_unknown_package_page(browser, site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/p/acme/nothing")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "acme/nothing" in browser.find_element(By.TAG_NAME, "main").text
