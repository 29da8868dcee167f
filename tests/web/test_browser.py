"""`cloudrec web` in Debian's headless chromium, against real jobs: real `cloudrec worker` and
`cloudrec beat` processes recording from the emulator, submitted with `cloudrec record`.

The list follows jobs without a reload, each job's page is linked from it, the player plays a
finished recording and the live composite of one in progress (time advances, the picture has the
canvas size), user-controlled text stays text, and the console stays free of errors and warnings.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import chromium, console_problems
from tests.support.waiting import wait_for
from tests.web.site import CANVAS, PASSWORD, S3_PROFILE, USER, Site

pytestmark = pytest.mark.e2e

FINISHED_JOB = "web-finished"
HOSTILE_CNAME = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def no_console_problems(browser: WebDriver) -> Iterator[None]:
    console_problems(browser)  # what an earlier test left is that test's
    yield
    assert console_problems(browser) == []


def text_of(browser: WebDriver, selector: str) -> str:
    """The rendered text of the first match (one script call: the live refresh replaces
    elements between two WebDriver calls)."""
    text: str = browser.execute_script(
        "const found = document.querySelector(arguments[0]);return found ? found.innerText : '';",
        selector,
    )
    return text


def click(browser: WebDriver, selector: str) -> None:
    """Click the first match, found and clicked in one script call (see :func:`text_of`)."""
    browser.execute_script("document.querySelector(arguments[0]).click();", selector)


def shown_jobs(browser: WebDriver) -> set[str]:
    jobs: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('tr.job')].map(r => r.dataset.job);"
    )
    return set(jobs)


def row_state(browser: WebDriver, job_id: str) -> str:
    return text_of(browser, f'tr[data-job="{job_id}"] .state')


def player(browser: WebDriver) -> dict[str, Any]:
    video: dict[str, Any] = browser.execute_script(
        "const v = document.getElementById('player');"
        "return {time: v.currentTime, width: v.videoWidth, height: v.videoHeight,"
        " source: v.dataset.source || null, error: v.dataset.error || null,"
        " paused: v.paused};"
    )
    return video


def play_until(browser: WebDriver, seconds: float, timeout: float = 60.0) -> dict[str, Any]:
    """Start the player and wait until it has played ``seconds`` of the recording."""
    wait_for(lambda: player(browser)["source"], timeout, 0.2, "the player to get a source")
    browser.execute_script("document.getElementById('player').play()")

    def played() -> dict[str, Any] | None:
        state = player(browser)
        assert state["error"] is None, state
        return state if state["time"] >= seconds else None

    return wait_for(played, timeout, 0.2, f"the player to play {seconds} s")


def test_the_list_follows_a_job_without_reloading(site: Site, browser: WebDriver) -> None:
    browser.get(f"{site.url}/")
    browser.execute_script("window.notReloaded = true;")

    # Recording for several seconds: several refreshes of the list see it.
    site.record("web-list", FINISHED_JOB, duration=15)
    wait_for(lambda: row_state(browser, FINISHED_JOB) == "recording", 60, 0.2, "recording")
    countdown = text_of(browser, f'tr[data-job="{FINISHED_JOB}"] .countdown')
    assert countdown.endswith("left"), countdown
    assert text_of(browser, f'tr[data-job="{FINISHED_JOB}"] .cname') == "web-list"
    wait_for(lambda: row_state(browser, FINISHED_JOB) == "completed", 90, 0.2, "completed")

    assert site.job(FINISHED_JOB).state == "completed"
    assert browser.execute_script("return window.notReloaded === true;"), "the page reloaded"
    assert text_of(browser, f'tr[data-job="{FINISHED_JOB}"] .countdown') == "-"


def test_the_job_page_is_linked_from_the_list(site: Site, browser: WebDriver) -> None:
    site.wait_state(FINISHED_JOB, "completed")
    browser.get(f"{site.url}/")
    click(browser, f'tr[data-job="{FINISHED_JOB}"] a')
    wait_for(lambda: text_of(browser, "h1 .job-id") == FINISHED_JOB, 30, 0.2, "the job's page")

    job = site.job(FINISHED_JOB)
    history = text_of(browser, "#history")
    for entry in job.history:
        assert str(entry.state) in history
    files = text_of(browser, "#files")
    assert job.files and all(f.fileName in files for f in job.files)
    assert "completed" in text_of(browser, "#summary")
    assert job.sid and job.sid in text_of(browser, "#summary")
    assert " ".join(text_of(browser, "#problems").split()) == "error none callback none"
    # Each file's link is the job's own file, served.
    link = browser.execute_script("return document.querySelector('#files a').href;")
    assert link == f"{site.url}/jobs/{FINISHED_JOB}/files/{job.files[0].fileName}"


def test_the_list_finds_jobs_by_channel_job_id_or_label(site: Site, browser: WebDriver) -> None:
    site.wait_state(FINISHED_JOB, "completed")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    spec = {"job_id": "web-labelled", "start_at": later, "labels": {"course": "Physics 101"}}
    site.submit_spec("other-channel", spec)
    browser.get(f"{site.url}/")
    for text, expected in (
        ("web-LIST", {FINISHED_JOB}),  # the channel, any case
        ("physics", {"web-labelled"}),  # a label's value
        ("labelled", {"web-labelled"}),  # the job id
        ("web-", {FINISHED_JOB, "web-labelled"}),
    ):
        search = browser.find_element(By.CSS_SELECTOR, 'input[name="q"]')
        search.clear()
        search.send_keys(text)
        browser.find_element(By.CSS_SELECTOR, "form.filter button").click()
        wait_for(lambda t=text: f"q={t}" in browser.current_url, 30, 0.2, "the search")
        assert shown_jobs(browser) == expected, text
        # The live refresh keeps the search.
        refreshed = int(browser.execute_script("return Number(document.body.dataset.refreshed||0)"))
        wait_for(
            lambda r=refreshed: (
                browser.execute_script("return Number(document.body.dataset.refreshed||0)") > r
            ),
            30,
            0.2,
            "a refresh",
        )
        assert shown_jobs(browser) == expected, text
    site.cli("cancel", "web-labelled")


def test_the_player_plays_a_finished_recording(site: Site, browser: WebDriver) -> None:
    site.wait_state(FINISHED_JOB, "completed")
    browser.get(f"{site.url}/jobs/{FINISHED_JOB}")
    state = play_until(browser, 2.0)
    assert (state["width"], state["height"]) == CANVAS
    assert state["source"].endswith(".m3u8")


def test_the_player_plays_the_live_composite_of_a_recording(site: Site, browser: WebDriver) -> None:
    job_id = "web-live"
    site.record("web-live", job_id, duration=60)
    site.wait_state(job_id, "recording", timeout=60)
    browser.get(f"{site.url}/jobs/{job_id}")
    wait_for(lambda: "recording now" in text_of(browser, "#sources"), 60, 0.2, "the live source")

    first = play_until(browser, 1.0)
    later = play_until(browser, first["time"] + 3.0)
    assert site.job(job_id).state == "recording", "played while the recording went on"
    assert (later["width"], later["height"]) == CANVAS
    assert later["source"] == f"/jobs/{job_id}/files/{site.job(job_id).sid}_web-live.m3u8"

    site.cli("stop", job_id)
    site.wait_state(job_id, "completed")
    wait_for(lambda: "completed" in text_of(browser, "#summary .state"), 30, 0.2, "completed")


def test_what_users_write_is_shown_as_text(site: Site, browser: WebDriver) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    spec = {
        "job_id": "web-hostile",
        "start_at": later,
        "duration": 60,
        "labels": {"note": "<script>alert(2)</script>"},
    }
    site.submit_spec(HOSTILE_CNAME, spec)
    for url in (f"{site.url}/", f"{site.url}/jobs/web-hostile"):
        browser.get(url)
        wait_for(lambda: HOSTILE_CNAME in text_of(browser, "main"), 30, 0.2, "the job shown")
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
        assert all(src and "/static/" in src for src in scripts), scripts
        # Through one refresh of the live parts, too.
        before = int(browser.execute_script("return Number(document.body.dataset.refreshed||0)"))
        wait_for(
            lambda b=before: (
                browser.execute_script("return Number(document.body.dataset.refreshed||0)") > b
            ),
            30,
            0.2,
            "a refresh",
        )
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        assert HOSTILE_CNAME in text_of(browser, "main")
    assert "<script>alert(2)</script>" in text_of(browser, "#summary")
    site.cli("cancel", "web-hostile")


def test_a_recording_in_s3_plays_through_the_page(site: Site, browser: WebDriver) -> None:
    job_id = "web-s3"
    site.record("web-s3", job_id, 10, "--storage", S3_PROFILE, "--files", "hls,mp4")
    job = site.wait_state(job_id, "completed")
    on_disk = [p for p in site.storage_dir.rglob(f"*{job.sid}_*") if ".staging" not in p.parts]
    assert on_disk == [], "the files went to S3, not to the disk"
    browser.get(f"{site.url}/jobs/{job_id}")
    state = play_until(browser, 2.0)
    assert (state["width"], state["height"]) == CANVAS
    assert state["source"].endswith(".m3u8")
    shown = (
        browser.page_source
        + requests.get(f"{site.url}/api/jobs/{job_id}", auth=(USER, PASSWORD), timeout=30).text
    )
    for secret in (site.env[f"CLOUDREC_STORAGE__S3__{k}"] for k in ("ACCESS_KEY", "SECRET_KEY")):
        assert secret not in shown

    click(browser, 'a.source[data-kind="mp4"]')
    wait_for(lambda: player(browser)["source"].endswith(".mp4"), 30, 0.2, "the MP4 chosen")
    state = play_until(browser, 1.0)
    assert (state["width"], state["height"]) == CANVAS

    # Byte ranges pass through the page to S3 (the player seeks in an MP4 with them).
    part = requests.get(
        f"{site.url}{state['source']}",
        headers={"Range": "bytes=0-99"},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["content-range"].startswith("bytes 0-99/")


def test_a_browser_without_the_credentials_is_refused(site: Site) -> None:
    site.wait_state(FINISHED_JOB, "completed")
    with chromium() as anonymous:
        for path in ("/", f"/jobs/{FINISHED_JOB}", "/api/jobs"):
            anonymous.get(f"{site.url}{path}")
            problems = console_problems(anonymous)
            assert any("status of 401" in p["message"] for p in problems), problems
            assert FINISHED_JOB not in anonymous.page_source
