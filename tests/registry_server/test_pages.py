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
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


@pytest.fixture
def site(acme, live_server, make_patch):
    figures = {"toxicity_probability": 0.12, "perplexity": 18.4}
    script = "<script>alert(1)</script> fair"
    uploads = [
        make_patch(version="1.0.0", seed=1, evaluation={"toxicity_probability": 0.31}),
        make_patch(version="1.1.0", seed=2, evaluation=figures),
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
    rows = browser.find_elements(By.CSS_SELECTOR, "#packages tbody tr")
    assert [row.text.split()[0] for row in rows] == ["acme/bias"]
    _screenshot(browser, f"registry-index-{request.node.callspec.id}")
    browser.get(site.url + "/?q=nothing-like-this")
    assert browser.find_element(By.ID, "no-results").text == "No patches match your search."


def test_package_page(browser, site, request) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/p/acme/toxicity")
    assert browser.find_element(By.TAG_NAME, "h1").text == "acme/toxicity"
    assert browser.find_element(By.ID, "domain").text == "toxicity"
    assert browser.find_element(By.ID, "summary").text == "Lowers toxicity of tiny-model"
    command = browser.find_element(By.ID, "install-command").text
    assert command == "ppatch install acme/toxicity@1.1.0 --model MODEL"
    assert browser.find_element(By.ID, "copy-install").is_displayed()
    notices = [n.text for n in browser.find_elements(By.CLASS_NAME, "yank-notice")]
    assert notices == ["Version 1.0.0 was yanked: over-refuses medical questions"]
    evaluation = browser.find_element(By.ID, "evaluation").text
    assert "perplexity 18.4" in evaluation and "toxicity_probability 0.12" in evaluation
    versions = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")]
    assert versions[0].startswith("1.1.0 available") and FP_B in versions[0]
    assert versions[1].startswith("1.0.0 yanked")
    _screenshot(browser, f"registry-package-{request.node.callspec.id}")


def test_unknown_package_page(browser, site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/p/acme/nothing")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "acme/nothing" in browser.find_element(By.TAG_NAME, "main").text
