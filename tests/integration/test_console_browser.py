"""The console in a real headless Chromium (Debian's chromium, driven through Debian's
chromedriver by Selenium; nothing downloads a browser or a driver): sign in, submit an
invalid subdomain (the field error, nothing written), then a valid form, and watch the
bootstrap page reach workflow.queue.completed over server-sent events, against the real
pipeline (`pipeline run` + the bootstrap worker) on PostgreSQL, Kafka and Temporal.

Screenshots of the three pages are taken each run (in the test's folder); with
``CONSOLE_SCREENSHOTS_DIR=docs/img`` they refresh the README's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from temporalio.client import Client

from pipeline import events as ev
from pipeline.dev.layout import DevLayout
from tests.integration.pipeline_process import (
    eventually,
    free_port,
    pipeline_and_worker,
    pipeline_cli,
    slot_active,
)

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "console-test-token-" + "7" * 32


def browser() -> WebDriver:
    """Debian's chromium, headless, through Debian's chromedriver: both paths are given,
    so Selenium Manager (which would download) never runs."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,1000")
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pipeline console exited {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"pipeline console did not listen on {port}:\n{log.read_text()}")


def start_console(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [pipeline_cli(), "console", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def domain_event_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM domain_events").fetchone()
    assert row is not None
    return int(row[0])


def waiting(driver: WebDriver, seconds: float) -> WebDriverWait[WebDriver]:
    """A wait that looks again when the live part was swapped under it (SSE updates
    replace #live's HTML, leaving the elements found before stale)."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def live_text(driver: WebDriver, css: str) -> str:
    """The text of an element of the live part, found again if it was just replaced."""
    for _ in range(50):
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"{css} kept being replaced")


def fill(driver: WebDriver, field_id: str, value: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(value)


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    # The whole page: a viewport as tall as the document (Chrome's DevTools protocol).
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1200, "height": min(height, 2400), "deviceScaleFactor": 1}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
    path = folder / f"console-{name}.png"
    try:
        assert driver.save_screenshot(str(path)), path
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def drive(base: str, dsn: str, shots: Path) -> dict[str, str]:
    """The browser session (blocking: run in a thread, the worker shares the loop)."""
    driver = browser()
    seen: dict[str, str] = {}
    try:
        wait = waiting(driver, 30)
        driver.get(f"{base}/organizations/new")
        assert "/login" in driver.current_url  # writing needs the web auth token
        fill(driver, "token", TOKEN)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.current_url.endswith("/organizations/new"))

        # An invalid subdomain: the field's error, and nothing written.
        before = domain_event_count(dsn)
        fill(driver, "name", "Browser Test Org")
        fill(driver, "subdomain", "Not_A_Label!")
        fill(driver, "admin_email_0", "admin@browser.test")
        driver.find_element(By.ID, "submit").click()
        error = wait.until(lambda d: d.find_element(By.ID, "subdomain-error"))
        seen["subdomain_error"] = error.text
        assert domain_event_count(dsn) == before
        screenshot(driver, shots, "new-organization")

        subdomain = f"browser-{uuid.uuid4().hex[:8]}"
        fill(driver, "subdomain", subdomain)
        fill(driver, "admin_email_1", "ops@browser.test")
        driver.find_element(By.ID, "submit").click()
        wait.until(lambda d: "/organizations/" in d.current_url and "/new" not in d.current_url)
        seen["org_url"] = driver.current_url
        # No reload from here on: what changes arrives over server-sent events.
        waiting(driver, 240).until(
            lambda d: d.find_elements(
                By.CSS_SELECTOR, f'tr.event[data-type="{ev.QUEUE_COMPLETED}"]'
            )
        )
        waiting(driver, 60).until(
            lambda d: (
                "completed" in d.find_element(By.ID, "state").text
                and "completed" in d.find_element(By.CSS_SELECTOR, "table.kv").text
            )
        )
        # The stream ended (`done`): the page no longer changes under us.
        seen["org_page"] = live_text(driver, "main")
        seen["temporal_link"] = str(
            driver.find_element(By.LINK_TEXT, "open in Temporal UI").get_attribute("href")
        )
        screenshot(driver, shots, "organization")

        driver.get(f"{base}/pipeline")
        wait.until(lambda d: "Consumer lag" in d.find_element(By.TAG_NAME, "main").text)
        seen["pipeline_page"] = live_text(driver, "main")
        # It refreshes by itself: the time it was read at changes without a reload.
        read_at = live_text(driver, "#live p.muted")
        waiting(driver, 60).until(lambda d: live_text(d, "#live p.muted") != read_at)
        screenshot(driver, shots, "pipeline")
    finally:
        driver.quit()
    return seen


async def test_console_form_to_completed_bootstrap_in_chromium(
    fresh_db: str,
    kafka_bootstrap: str,
    temporal_client: Client,
    dev_layout: DevLayout,
    tmp_path: Path,
) -> None:
    async with pipeline_and_worker(fresh_db, kafka_bootstrap, temporal_client, tmp_path) as run:
        await eventually(lambda: slot_active(fresh_db, run.settings.slot_name), "reader", run)
        port = free_port()
        ui = f"http://127.0.0.1:{dev_layout.temporal_ui_port}"
        env = {**run.env, "PIPELINE_WEB_AUTH_TOKEN": TOKEN, "PIPELINE_TEMPORAL_UI_URL": ui}
        log = tmp_path / "console.log"
        console = start_console(env, port, log)
        try:
            await asyncio.to_thread(wait_for_port, port, console, log)
            seen = await asyncio.to_thread(drive, f"http://127.0.0.1:{port}", fresh_db, tmp_path)
        finally:
            console.terminate()
            console.wait(30)

    assert "lower-case letters" in seen["subdomain_error"], seen
    org_id = seen["org_url"].rsplit("/", 1)[1]
    workflow_id = ev.workflow_id_for(org_id)
    for event_type in (ev.BOOTSTRAP_INITIATED, ev.QUEUE_PENDING, ev.QUEUE_COMPLETED):
        assert event_type in seen["org_page"]
    assert workflow_id in seen["org_page"]
    assert seen["temporal_link"] == f"{ui}/namespaces/default/workflows/{workflow_id}"
    assert "ops@browser.test (organization_admin): sent" in seen["org_page"]
    assert "pending" in seen["pipeline_page"] and "Dead letters" in seen["pipeline_page"]
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            "SELECT event_metadata->>'source', idempotency_key FROM domain_events "
            "WHERE stream_id = %s AND event_type = %s",
            (uuid.UUID(org_id), ev.BOOTSTRAP_INITIATED),
        ).fetchone()
    assert row == ("pipeline-console", f"console:{org_id}:{ev.BOOTSTRAP_INITIATED}")
    console_log = log.read_text()
    assert TOKEN not in console_log
    assert "Traceback" not in console_log, console_log
    target = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    if target:
        for shot in tmp_path.glob("console-*.png"):
            shutil.copy(shot, Path(target) / shot.name)
