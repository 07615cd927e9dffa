"""The study server under attack: forged votes from another origin (in Chromium, from a second local origin, with
and without a token), oversized and deeply nested bodies, control characters in names, every loopback address, and
a judgements.csv left without its header by a crash."""

from __future__ import annotations

import csv
import http.server
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.human.study.store import COLUMNS, JudgementStore

from .browser_support import launch, playwright_or_skip
from .study_support import free_port, start_server
from .test_study import make


def _client(study: Path, **kw):
    from starlette.testclient import TestClient

    from clipscore_sr.human.study.app import create_app

    return TestClient(create_app(study, **kw), base_url="http://127.0.0.1")


def _ok_answer(c, annotator: str = "ann") -> dict:
    t = c.get("/api/session", params={"annotator": annotator}).json()["trials"][0]
    return {"annotator": annotator, "trial": t["id"], "shown_left": t["shown_left"], "choice": "left", "rt_ms": 5}


def test_writes_from_another_origin_are_refused(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    c = _client(study)
    ok = _ok_answer(c)
    for headers in ({"origin": "http://evil.example"}, {"origin": "http://127.0.0.1:9999"},
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
        r = c.post("/api/answer", json=ok, headers=headers)
        assert r.status_code == 403 and "cross-origin" in r.json()["error"], (headers, r.text)
        assert c.post("/api/undo", json={"annotator": "ann"}, headers=headers).status_code == 403
    r = c.post("/api/answer", content=str(ok).replace("'", '"'), headers={"content-type": "text/plain"})
    assert r.status_code == 415  # a form or no-cors fetch cannot send JSON
    assert not (study / "judgements.csv").exists()
    same = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
    assert c.post("/api/answer", json=ok, headers=same).status_code == 200


def test_with_a_token_every_write_carries_it_in_the_header(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    c = _client(study, token="s3cret")
    page = c.get("/", params={"token": "s3cret"})  # sets the cookie, as a browser would
    assert page.status_code == 200 and '<meta name="study-token" content="s3cret">' in page.text
    ok = _ok_answer(c)
    r = c.post("/api/answer", json=ok)  # the cookie alone (sent for any page of the site) is not enough
    assert r.status_code == 403 and "X-Study-Token" in r.json()["error"]
    assert c.post("/api/answer", json=ok, headers={"x-study-token": "s3cret"}).status_code == 200


def test_bodies_are_bounded_and_nesting_is_a_400(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    c = _client(study)
    big = b'{"annotator": "' + b"x" * 10_000 + b'"}'
    assert c.post("/api/undo", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: streamed, and cut off at the limit
        for _ in range(1000):
            yield b" " * 1024

    r = c.post("/api/undo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    nested = b"[" * 2000 + b"]" * 2000
    r = c.post("/api/undo", content=nested, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested" in r.json()["error"]


@pytest.mark.parametrize("name", ["alice\n", "alice\r", "bob\x00", "a\tb"])
def test_annotator_names_with_control_characters_are_refused(tmp_path: Path, name: str) -> None:
    study = make(tmp_path, "--trials", "4")
    c = _client(study)
    assert c.get("/api/session", params={"annotator": name}).status_code == 400
    ok = _ok_answer(c)
    assert c.post("/api/answer", json={**ok, "annotator": name}).status_code == 400
    assert not (study / "judgements.csv").exists()


def test_every_loopback_address_is_served(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    c = _client(study)
    for host in ("127.0.0.2:8765", "127.1.2.3", "[::1]:8765", "localhost:1"):
        assert c.get("/api/config", headers={"host": host}).status_code == 200, host


def test_a_header_less_judgements_file_is_repaired_and_the_first_write_has_its_header(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    path = study / "judgements.csv"
    path.write_bytes(b"")  # what a crash during the first write of an older version left
    c = _client(study)
    assert c.post("/api/answer", json=_ok_answer(c)).status_code == 200
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 2
    # a file whose header line is gone but whose rows are intact: restored when the store opens it
    path.write_text("\n".join(lines[1:]) + "\n")
    store = JudgementStore(study)
    assert "restored" in store.repaired and path.read_text().splitlines() == lines
    res = CliRunner().invoke(main, ["study", "status", str(study)])
    assert res.exit_code == 0, res.output
    # anything else is refused in one line, and never overwritten
    path.write_text("garbage,1\n")
    with pytest.raises(Exception, match="header is not the study's columns"):
        JudgementStore(study)
    assert path.read_text() == "garbage,1\n"


# ------------------------------------------------------------------------------------------- in Chromium

_EVIL = """<!doctype html><html><body><form id="f" method="POST" enctype="text/plain" action="{target}/api/answer">
<input name='{{"annotator":"victim","trial":"{trial}","shown_left":"{left}","choice":"left","rt_ms":1,"x":"' value='"}}'>
</form><script>
(async () => {{
  const body = JSON.stringify({{annotator: "victim", trial: "{trial}", shown_left: "{left}", choice: "left", rt_ms: 1}});
  const tries = [
    fetch("{target}/api/answer", {{method: "POST", mode: "no-cors", credentials: "include", body,
                                   headers: {{"Content-Type": "text/plain"}}}}),
    fetch("{target}/api/answer", {{method: "POST", credentials: "include", body,
                                   headers: {{"Content-Type": "application/json", "X-Study-Token": "guess"}}}}),
    fetch("{target}/api/undo", {{method: "POST", mode: "no-cors", credentials: "include",
                                 body: JSON.stringify({{annotator: "victim"}})}}),
  ];
  for (const t of tries) {{ try {{ await t; }} catch (e) {{}} }}
  document.getElementById("f").submit();
}})();
</script></body></html>"""


def _serve_dir(folder: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.mark.slow
@pytest.mark.parametrize("token", [None, "s3cret"])
def test_forged_votes_from_a_second_local_origin_in_chromium(tmp_path: Path, token: str | None) -> None:
    sync_api = playwright_or_skip()
    from clipscore_sr.human.study.manifest import load_study
    from clipscore_sr.human.study.store import shown_left

    study = make(tmp_path, "--trials", "4")
    s = load_study(study)
    trial = s.trials[0]
    port, evil_port = free_port(), free_port()
    extra = ("--token", token) if token else ()
    server = start_server(study, port, *extra)
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    target = f"http://127.0.0.1:{port}"
    (evil_dir / "index.html").write_text(_EVIL.format(target=target, trial=trial.id,
                                                      left=shown_left(s, "victim", trial)))
    evil = _serve_dir(evil_dir, evil_port)
    try:
        with sync_api.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            # the victim has the study open (with the token cookie when there is one) ...
            page.goto(f"{target}/" + (f"?token={token}" if token else ""))
            page.wait_for_selector("body[data-ready='1']")
            # ... then visits a page on another port of the same host (same site, another origin)
            for origin in (f"http://127.0.0.1:{evil_port}", f"http://localhost:{evil_port}"):
                page.goto(f"{origin}/index.html")
                page.wait_for_timeout(2500)  # its fetches, then the form submission (which navigates away)
            browser.close()
    finally:
        evil.shutdown()
        server.kill()
        server.wait(10)
    path = study / "judgements.csv"
    rows = list(csv.DictReader(open(path, newline=""))) if path.exists() else []
    assert rows == [], rows  # no forged vote was recorded


def test_validation_refuses_control_characters_instead_of_merging_names(tmp_path: Path) -> None:
    csv_path = tmp_path / "j.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pair_id", "dataset", "gt", "a", "b", "choice", "annotator"])
        w.writerow(["p1", "d", "g.png", "a.png", "b.png", "a", "alice"])
        w.writerow(["p1", "d", "g.png", "a.png", "b.png", "b", "alice\n"])  # quoted: one cell with a newline
    res = CliRunner().invoke(main, ["judgements", "validate", str(csv_path)])
    assert res.exit_code != 0 and "control character" in res.output
