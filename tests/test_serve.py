"""`mirkit serve` as a real server process on a free localhost port: the API's answers
equal the command line's, bad requests get 4xx JSON and never a 5xx, traversal attempts
are refused, concurrent requests (batched) get the answers they would get alone, and
the page works in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirkit.cli import main
from mirkit.serving.batching import Coalescer
from mirkit.serving.media import AudioFiles
from mirkit.serving.recommend import MAX_HISTORY, Recommender


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(indexed_run: Path, tiny_corpus: Path):
    """(base URL, run) of `mirkit serve` started as its own process."""
    port = _free_port()
    command = [sys.executable, "-m", "mirkit", "serve", "--run", str(indexed_run)]
    command += ["--port", str(port), "--audio-dir", str(tiny_corpus / "audio")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/v1/run", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"mirkit serve did not start:\n{process.stdout.read().decode()}")
            time.sleep(0.3)
    yield base, indexed_run
    process.terminate()
    process.wait(timeout=30)


def get(url: str, data: bytes | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET (or a POST of `data`)."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["content-type"], err.read()


def get_json(url: str, data: bytes | None = None) -> tuple[int, dict]:
    status, kind, body = get(url, data)
    assert kind.startswith("application/json"), (url, status, kind)
    return status, json.loads(body)


def cli_json(*args: str) -> dict:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_api_returns_what_the_command_line_prints(server):
    base, run = server
    rec = Recommender(run)
    user = sorted(rec.user_rows)[3]
    at = int(rec.played_at(user)[-1]) + 7200
    _, answer = get_json(f"{base}/api/v1/users/{user}/recommendations?k=5&explain=true&at={at}")
    printed = cli_json("recommend", user, "--run", run, "--k", 5, "--explain", "--json", "--at", at)
    assert answer == printed and len(answer["recommendations"]) == 5
    assert set(answer["recommendations"][0]["attention"]) >= {"id", "audio", "lyrics", "cover"}

    _, answer = get_json(f"{base}/api/v1/users/{user}/recommendations")  # default time
    assert answer == cli_json("recommend", user, "--run", run, "--json")

    item = int(rec.history(user)[-1])
    _, answer = get_json(f"{base}/api/v1/tracks/{item}/similar?k=4")
    assert answer == cli_json("similar", f"#{item}", "--run", run, "--k", 4, "--json")

    first = rec.catalog.row(0, named=True)
    history = [first["track_id"], f"{first['artist']} - {first['title']}", "no such track"]
    body = json.dumps({"history": history, "k": 7, "exclude_seen": True}).encode()
    _, answer = get_json(f"{base}/api/v1/recommendations", body)
    printed = cli_json(
        "recommend", "--history", ",".join(history), "--run", run, "--k", 7, "--exclude-seen",
        "--json",
    )  # fmt: skip
    assert answer == printed and answer["unknown"] == ["no such track"]
    assert first["item_id"] not in [r["item_id"] for r in answer["recommendations"]]


def test_tracks_media_search_and_new_releases(server, tiny_corpus):
    base, run = server
    _, identity = get_json(f"{base}/api/v1/run")
    assert identity["audio"] and identity["items"] > 0 and identity["users"] > 0
    assert identity["index"]["model_sha256"] and identity["config"]["n_items"] == identity["items"]
    assert identity["default_user"] == "user_000001"  # the tiny corpus has no user_000232

    rec = Recommender(run)
    item = int(
        rec.catalog.filter(rec.catalog["has_audio"] & rec.catalog["has_cover"])[0, "item_id"]
    )
    status, detail = get_json(f"{base}/api/v1/tracks/{item}")
    assert status == 200 and detail["item_id"] == item and detail["modalities"]["audio"]
    assert abs(sum(detail["attention"].values()) - 1) < 0.01
    status, kind, cover = get(base + detail["cover_url"])
    assert status == 200 and kind == "image/jpeg" and cover[:2] == b"\xff\xd8"
    status, kind, mel = get(base + detail["mel_url"])
    assert status == 200 and kind == "image/png" and mel[:8] == b"\x89PNG\r\n\x1a\n"
    status, kind, audio = get(base + detail["audio_url"])
    assert status == 200 and kind.startswith("audio/")
    assert audio == AudioFiles(tiny_corpus / "audio", rec.catalog).path_of[item].read_bytes()

    _, found = get_json(f"{base}/api/v1/search?q={detail['artist'][:4]}")
    assert item in [t["item_id"] for t in found["tracks"]] or len(found["tracks"]) == 20
    _, found = get_json(f"{base}/api/v1/search?q=user_00000")
    assert found["users"][:2] == ["user_000001", "user_000002"]

    _, fresh = get_json(f"{base}/api/v1/users/user_000001/new-releases?k=5")
    cold = rec.cold.nonzero()[0]
    assert [r["item_id"] for r in fresh["recommendations"]] == [
        r["item_id"] for r in fresh["recommendations"] if r["cold"]
    ]
    assert len(fresh["recommendations"]) == min(5, len(cold))


def test_bad_requests_get_a_4xx_that_says_what_was_wrong(server):
    base, _ = server
    too_long = json.dumps({"history": ["x"] * (MAX_HISTORY + 1)}).encode()
    cases = [
        (f"{base}/api/v1/users/nobody/recommendations", None, 404, "--list-users"),
        (f"{base}/api/v1/tracks/0", None, 404, "item ids run from 1"),
        (f"{base}/api/v1/tracks/999999/similar", None, 404, "unknown track"),
        (f"{base}/api/v1/users/user_000001/recommendations?k=0", None, 400, "k=0 is out of range"),
        (f"{base}/api/v1/users/user_000001/recommendations?k=ten", None, 400, "whole number"),
        (f"{base}/api/v1/users/user_000001/recommendations?at=soon", None, 400, "ISO 8601"),
        (f"{base}/api/v1/users/user_000001/recommendations?explain=maybe", None, 400, "true or"),
        (f"{base}/api/v1/recommendations", b"{not json", 400, "not JSON"),
        (f"{base}/api/v1/recommendations", b'{"tracks": []}', 400, '"history"'),
        (f"{base}/api/v1/recommendations", b'{"history": [], "k": "5"}', 400, "whole number"),
        (f"{base}/api/v1/recommendations", too_long, 400, f"at most {MAX_HISTORY}"),
        (f"{base}/api/v1/search?q=%20", None, 400, "empty search"),
        (f"{base}/api/v1/nothing-here", None, 404, "Not Found"),
        (f"{base}/api/v1/run", b"{}", 405, "Method Not Allowed"),
    ]
    for url, data, status, words in cases:
        got, body = get_json(url, data)
        assert got == status and words in body["error"], (url, got, body)
    for attempt in (
        "/static/../pyproject.toml",
        "/static/..%2f..%2fpyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/api/v1/tracks/..%2f..%2fpyproject.toml/audio",
        "/api/v1/tracks/1/..%2f..%2f..%2fpyproject.toml",
    ):
        status, _, body = get(base + attempt)
        assert status == 404 and b"[project]" not in body, attempt
    assert get(f"{base}/api/v1/run")[0] == 200  # still serving


def test_audio_is_only_read_from_files_inside_the_audio_dir(tiny_corpus, indexed_run, tmp_path):
    rec = Recommender(indexed_run)
    folder = tmp_path / "audio"
    shutil.copytree(tiny_corpus / "audio", folder)
    victim = next(iter(AudioFiles(folder, rec.catalog).path_of.items()))
    outside = tmp_path / "secret.mp3"
    outside.write_bytes(b"not for the web")
    victim[1].unlink()
    (folder / victim[1].name).symlink_to(outside)  # the track's file is now a link outside
    files = AudioFiles(folder, rec.catalog)
    assert victim[0] not in files.path_of and files.path_of


def test_concurrent_requests_get_the_answers_they_get_alone(server):
    base, run = server
    users = sorted(Recommender(run).user_rows)[:16]
    alone = {u: get_json(f"{base}/api/v1/users/{u}/recommendations?k=5")[1] for u in users}
    with ThreadPoolExecutor(32) as pool:
        urls = [f"{base}/api/v1/users/{u}/recommendations?k=5" for u in users * 4]
        together = list(pool.map(get_json, urls))
    for url, (status, answer) in zip(urls, together, strict=True):  # scores to float error
        assert status == 200 and _rounded(answer) == _rounded(alone[answer["user"]]), url


def _rounded(answer: dict) -> dict:
    rows = [r | {"score": round(r["score"], 5)} for r in answer["recommendations"]]
    return answer | {"recommendations": rows}


def test_the_coalescer_batches_requests_that_wait_together():
    calls = []

    def work(key, items):
        calls.append((key, list(items)))
        time.sleep(0.05)  # a batch in progress: the others queue up
        return [f"{key}:{i}" for i in items]

    async def many():
        coalescer = Coalescer(work, max_batch=4)
        requests = [coalescer.submit("a", i) for i in range(7)] + [coalescer.submit("b", 9)]
        return await asyncio.gather(*requests)

    results = asyncio.run(many())
    assert results == [f"a:{i}" for i in range(7)] + ["b:9"]
    # at most max_batch in one call, keys never mixed, and keys take turns
    assert [(key, len(items)) for key, items in calls] == [("a", 4), ("b", 1), ("a", 3)]
    assert sorted(i for key, items in calls if key == "a" for i in items) == list(range(7))


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def test_the_page_in_a_real_browser(server):
    """Headless Chromium from Debian's packages (.ci/run installs them): the listener's
    page shows ten recommendations, a click shows the track's similar tracks, and its mel
    image and audio load."""
    if not (BROWSER and DRIVER):
        reason = "no chromium/chromedriver: `apt-get install chromium chromium-driver`"
        if os.environ.get("MIRKIT_REQUIRE_BROWSER"):
            pytest.fail(f"the browser test must run here, but there is {reason}")
        pytest.skip(f"SKIPPED THE BROWSER TEST: {reason} (.ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    options = Options()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(f"{base}/?user=user_000001")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#recommendations .track")) == 10)
        assert "user_000001" in browser.find_element(By.ID, "user-name").text
        first = browser.find_elements(By.CSS_SELECTOR, "#recommendations .track")[0]
        first.click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#similar .track")) >= 1)
        assert first.get_attribute("data-item-id") not in [
            t.get_attribute("data-item-id")
            for t in browser.find_elements(By.CSS_SELECTOR, "#similar .track")
        ]
        mel = browser.find_element(By.CSS_SELECTOR, "#detail-media img.mel")
        wait.until(lambda b: b.execute_script("return arguments[0].naturalWidth", mel) > 0)
        audio = browser.find_element(By.CSS_SELECTOR, "#detail-media audio")
        wait.until(lambda b: b.execute_script("return arguments[0].readyState", audio) >= 1)
        browser.find_element(By.ID, "tab-new").click()
        wait.until(lambda b: "cold tracks" in b.find_element(By.ID, "status").text)
        rows = browser.find_elements(By.CSS_SELECTOR, "#recommendations .track")
        assert all(r.find_elements(By.CSS_SELECTOR, ".badge.cold") for r in rows)
        logged = browser.get_log("browser")  # a missing cover is a 404, not a script error
        errors = [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"]
        assert not errors, errors
    finally:
        browser.quit()


def test_a_run_without_an_index_says_how_to_build_it(indexed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(indexed_run, run)
    (run / "index.h5").unlink()
    result = CliRunner().invoke(main, ["serve", "--run", str(run), "--port", "1"])
    assert result.exit_code == 1 and f"mirkit index --run {run}" in result.output
