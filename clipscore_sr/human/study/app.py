"""The local 2AFC web app: a Starlette application served by uvicorn.

Routes (all under the server's root): ``/`` the page, ``/static/{app.js,app.css}``, ``GET /api/config``,
``GET /api/session?annotator=NAME`` (trial order, sides, answers so far), ``GET /img/{trial}/{gt|left|right}
?annotator=NAME`` (only the study's renders), ``POST /api/answer`` and ``POST /api/undo``.

An active study (``study make --design active``) has no trial order up front: ``POST /api/next`` gives the
annotator's next trial (their earliest unanswered one, else a new one the server chooses and logs: :mod:`.live`),
and the answer's response carries the next trial too, so the choice happens between the answer and its reply.

Security: the server binds 127.0.0.1 by default and then refuses requests whose ``Host`` is not a loopback
name (DNS rebinding). Requests that change state (``POST``) must come from the page itself: an ``Origin`` (or
``Sec-Fetch-Site``) naming another origin, another port of the same host included, is refused (403), and the
body must be ``application/json`` (which a page elsewhere cannot send without a CORS preflight this server never
grants). With ``token`` every request must carry it (``?token=``, the ``X-Study-Token`` header or the cookie the
page sets), and every write must carry it in the ``X-Study-Token`` header (the page reads it from its own HTML;
a cookie alone, which the browser also sends for other pages of the same site, is not enough); comparisons are
constant-time. Bodies are read up to 4 KB and no further. Submissions are checked field by field: unknown trial,
a side that is not the one this annotator was shown, a choice the study does not allow, a malformed or deeply
nested body, an annotator name with control characters: HTTP 4xx with a message, nothing written.
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from .manifest import Study, Trial, load_study
from .store import JudgementStore, answer_row, shown_left

ANNOTATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY = 4096
_COOKIE = "srmetrics_study_token"


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def static_dir() -> Path:
    return Path(str(resources.files("clipscore_sr.human.study") / "static"))


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(study_dir: str | Path, *, annotator: str | None = None, token: str | None = None,
               loopback: bool = True):
    """The ASGI application for one study folder (see the module docstring)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    study: Study = load_study(study_dir)
    store = JudgementStore(study.root)
    live = None
    if study.active is not None:
        from .live import LiveDesign

        live = LiveDesign(study, store)  # replays the answers into the sampler: the state before a restart
    trials = study.by_id
    if annotator is not None and not ANNOTATOR.fullmatch(annotator):
        raise BadRequest(f"--annotator '{annotator}': use letters, digits, space, '.', '_', '@' or '-' (max 64)")
    static = static_dir()

    def who(value: Any) -> str:
        if not isinstance(value, str) or not ANNOTATOR.fullmatch(value):
            raise BadRequest("annotator: 1-64 letters, digits, space, '.', '_', '@' or '-' expected")
        if annotator is not None and value != annotator:
            raise BadRequest(f"annotator: this server records answers of '{annotator}' only")
        return value

    def lookup(value: Any) -> Trial | None:
        if not isinstance(value, str):
            return None
        return live.trial(value) if live is not None else trials.get(value)

    def trial_of(value: Any, name: str) -> Trial:
        t = lookup(value)
        if t is None:
            raise BadRequest(f"trial: unknown trial {str(value)[:40]!r}")
        if live is not None and not live.given_to(name, t.id):
            raise BadRequest(f"trial: {t.id} was not given to {name}")
        return t

    def left_of(name: str, t: Trial) -> str:
        return shown_left(study, name, t, live.trials if live is not None else trials)

    async def next_of(name: str) -> dict[str, Any] | None:
        t = await run_in_threadpool(live.next_trial, name)
        return None if t is None else {"id": t.id, "shown_left": left_of(name, t)}

    async def body(request: Request, keys: set[str]) -> dict[str, Any]:
        too_big = BadRequest(f"body larger than {MAX_BODY} bytes", 413)
        try:
            declared = int(request.headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if declared > MAX_BODY:
            raise too_big
        raw = bytearray()
        async for chunk in request.stream():  # never more than MAX_BODY + one chunk in memory
            raw += chunk
            if len(raw) > MAX_BODY:
                raise too_big
        try:
            data = json.loads(bytes(raw))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadRequest("body is not JSON") from None
        except RecursionError:
            raise BadRequest("body is nested too deeply") from None
        if not isinstance(data, dict) or set(data) != keys:
            raise BadRequest(f"body must be a JSON object with exactly the keys {', '.join(sorted(keys))}")
        return data

    async def index(request: Request) -> Response:
        import html

        page = (static / "index.html").read_text(encoding="utf-8")
        if token:  # the page sends it back in X-Study-Token on every write; other origins cannot read it
            page = page.replace("<head>", f'<head>\n<meta name="study-token" content="{html.escape(token)}">', 1)
        resp = HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                           "Content-Security-Policy": "frame-ancestors 'none'"})
        if token:
            resp.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
        return resp

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(static / name, media_type=STATIC_FILES[name])

    async def config(request: Request) -> Response:
        return JSONResponse({"dataset": study.dataset, "n_trials": study.n_trials, "allow_tie": study.allow_tie,
                             "annotator": annotator, "design": study.design})

    async def session(request: Request) -> Response:
        name = who(request.query_params.get("annotator"))
        answered = [r["pair_id"] for r in await run_in_threadpool(store.answers, name)]
        order = [{"id": t.id, "shown_left": left_of(name, t)} for t in study.trials] if live is None else []
        return JSONResponse({"annotator": name, "trials": order, "answered": answered,
                             "allow_tie": study.allow_tie, "design": study.design, "n_trials": study.n_trials})

    async def next_trial(request: Request) -> Response:
        data = await body(request, {"annotator"})
        name = who(data["annotator"])
        if live is None:
            raise BadRequest("this study's trials are fixed: GET /api/session lists them", 404)
        nxt = await next_of(name)
        return JSONResponse({"next": nxt, "n_answered": store.count(name), "n_trials": study.n_trials})

    async def image(request: Request) -> Response:
        role = request.path_params["role"]
        t = await run_in_threadpool(lookup, request.path_params["trial"])
        if t is None or role not in ("gt", "left", "right"):
            return JSONResponse({"error": "not found"}, status_code=404)
        if role == "gt":
            rel = t.gt_render
        else:
            left = left_of(who(request.query_params.get("annotator")), t)
            side = left if role == "left" else ("b" if left == "a" else "a")
            rel = t.a_render if side == "a" else t.b_render
        return FileResponse(study.render_path(rel), media_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})

    async def answer(request: Request) -> Response:
        data = await body(request, {"annotator", "trial", "shown_left", "choice", "rt_ms"})
        name = who(data["annotator"])
        t = await run_in_threadpool(trial_of, data["trial"], name)
        left = left_of(name, t)
        if data["shown_left"] != left:
            raise BadRequest(f"shown_left: trial {t.id} was not shown with {str(data['shown_left'])[:8]!r} on the left")
        allowed = ("left", "right", "tie") if study.allow_tie else ("left", "right")
        if data["choice"] not in allowed:
            raise BadRequest(f"choice: expected one of {', '.join(allowed)}")
        rt = data["rt_ms"]
        if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not 0 <= rt <= 86_400_000:
            raise BadRequest("rt_ms: a response time in milliseconds (0 to 86400000) expected")
        right = "b" if left == "a" else "a"
        choice = {"left": left, "right": right, "tie": "tie"}[data["choice"]]
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        row = answer_row(study, t, name, choice, left, int(round(rt)), stamp)
        stored, new = await run_in_threadpool(store.append, row)
        if not new and stored["choice"] != choice:
            raise BadRequest(f"trial {t.id} is already answered by {name} ({stored['choice']}); undo it first", 409)
        out = {"ok": True, "duplicate": not new, "choice": choice, "n_answered": store.count(name)}
        if live is not None:  # the next trial, chosen now that this answer is in the posterior
            out["next"] = await next_of(name)
        return JSONResponse(out)

    async def undo(request: Request) -> Response:
        data = await body(request, {"annotator"})
        row = await run_in_threadpool(live.undo if live is not None else store.undo, who(data["annotator"]))
        return JSONResponse({"undone": row["pair_id"] if row else None})

    routes = [
        Route("/", index), Route("/static/{name}", static_file), Route("/api/config", config),
        Route("/api/session", session), Route("/img/{trial}/{role}", image),
        Route("/api/answer", answer, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
        Route("/api/next", next_trial, methods=["POST"]),
    ]

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app = Starlette(routes=routes, exception_handlers={BadRequest: bad_request})
    app.state.study = study
    app.state.store = store
    app.state.live = live
    return _Guard(app, token=token, loopback=loopback)


class _Guard:
    """ASGI middleware: loopback ``Host`` names only (when bound to loopback); the token on every request."""

    def __init__(self, app, *, token: str | None, loopback: bool) -> None:
        self.app, self.token, self.loopback = app, token, loopback
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            from starlette.requests import Request
            from starlette.responses import JSONResponse

            request = Request(scope)
            problem = self.refuse(request)
            if problem is not None:
                await JSONResponse({"error": problem[1]}, status_code=problem[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refuse(self, request) -> tuple[int, str] | None:
        """``(status, reason)`` when a request must be refused (see the module docstring), else None."""
        host = request.headers.get("host", "")
        if self.loopback and not is_loopback(_host_name(host)):
            return 400, "Host header is not a loopback name"
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and origin.lower() != f"http://{host}".lower():
                return 403, f"cross-origin request refused (Origin {origin[:80]})"
            site = request.headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return 403, f"cross-origin request refused (Sec-Fetch-Site {site[:20]})"
            if not request.headers.get("content-type", "").lower().startswith("application/json"):
                return 415, "a write must be sent as application/json"
        if self.token:
            header = request.headers.get("x-study-token") or ""
            given = header if request.method not in ("GET", "HEAD") else (
                request.query_params.get("token") or header or request.cookies.get(_COOKIE) or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 403, "missing or wrong token" + (" (a write needs the X-Study-Token header)"
                                                       if request.method not in ("GET", "HEAD") else "")
        return None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int):
    """A listening socket on HOST:PORT, bound before any banner; one-line errors (port in use, bad address)."""
    import errno
    import socket

    from .manifest import StudyError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no 40 ms delayed-ACK waits
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StudyError(f"port {port} is in use on {host} (another server, or a study still running): "
                             f"pass another --port, e.g. --port {port + 1}") from None
        raise StudyError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(study_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765, annotator: str | None = None,
          token: str | None = None, echo=print) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    from .manifest import StudyError

    loop = is_loopback(host)
    if not loop and not token:
        raise StudyError(f"--host {host} is reachable from the network: give --token SECRET (every request must "
                         "carry it), or bind 127.0.0.1")
    app = create_app(study_dir, annotator=annotator, token=token, loopback=loop)
    study = app.state.study
    sock = _bind(host, port)
    port = sock.getsockname()[1]  # the real one for --port 0
    if not loop:
        echo(f"Warning: serving on {host}: anyone who can reach this address and knows the token can see the "
             "images and submit answers")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    live = app.state.live
    what = f"{study.n_trials} trials" + (" per annotator, chosen while answered (active design)" if live else "")
    echo(f"study {study.root} ({what}) at {url}" + (f"?token={token}" if token else ""))
    if app.state.store.repaired:
        echo(f"Note: {app.state.store.repaired}")
    if live is not None:
        if live.repaired:
            echo(f"Note: {live.repaired}")
        echo(f"active design: {live.n_given} trial(s) given so far, posterior rebuilt from "
             f"{live.n_answers} answer(s) in {live.rebuild_s:.1f} s; every choice goes to {live.log.path}")
    echo(f"answers go to {study.root / 'judgements.csv'}; Ctrl+C to stop")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
