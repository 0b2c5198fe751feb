"""The HTTP API (`/api/v1/...`) and the web page of `mirkit serve`.

Every answer comes from the same `Recommender` methods as `mirkit recommend --json` and
`mirkit similar --json`, so the page, the API and the command line show the same
tracks and scores. The user tower and the index are loaded once per process; listeners'
recommendations are scored in batches of the requests that arrive together
(`Coalescer`). A request with a bad value gets a 4xx and a JSON `{"error": ...}` that
says what was wrong; a 5xx is a bug.
"""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mirkit.serving.batching import Coalescer
from mirkit.serving.media import AUDIO_TYPES, AudioFiles, ShardMedia
from mirkit.serving.recommend import (
    MAX_HISTORY,
    MAX_K,
    BadRequest,
    Recommender,
    UnknownId,
    parse_request_time,
)

API = "/api/v1"
DEFAULT_LISTENER = "user_000232"
STATIC = files("mirkit.serving") / "static"
log = logging.getLogger(__name__)


class Service:
    """What the routes share: the recommender, the media readers and the batcher."""

    def __init__(self, rec: Recommender, audio_dir: Path | None = None, max_batch: int = 64):
        self.rec = rec
        self.media = ShardMedia(rec.shards)
        self.audio = AudioFiles(audio_dir, rec.catalog) if audio_dir is not None else None
        self.listeners = Coalescer(self._answer_batch, max_batch)
        known = rec.user_rows
        self.default_user = DEFAULT_LISTENER if DEFAULT_LISTENER in known else min(known)

    def _answer_batch(self, key: tuple, requests: list[tuple[str, int | None]]) -> list[dict]:
        k, exclude_seen, explain = key
        users = [user for user, _ in requests]
        at = [when for _, when in requests]
        return self.rec.answers_for_users(users, k, exclude_seen, at, explain)

    def item(self, request: Request) -> int:
        item_id = request.path_params["item_id"]
        if not self.rec.index.ids.known(item_id):
            n = self.rec.index.n_items
            raise UnknownId(f"unknown track {item_id}: item ids run from 1 to {n}")
        return item_id

    def user(self, request: Request) -> str:
        user_id = request.path_params["user_id"]
        self.rec.history(user_id)  # an unknown id raises UnknownId, which says the fix
        return user_id


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}={value} is out of range: give {low} to {high}")
    return value


def _flag(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name}={text!r}: give true or false")
    return text in ("true", "1")


async def run_identity(request: Request) -> Response:
    service: Service = request.app.state.service
    rec = service.rec
    return JSONResponse(
        {
            "run": str(rec.run.path),
            "config": rec.run.record,
            "index": rec.index.meta,
            "items": rec.index.n_items,
            "users": len(rec.user_rows),
            "default_user": service.default_user,
            "audio": service.audio is not None,
            "limits": {"k": MAX_K, "history": MAX_HISTORY},
        }
    )


async def user_recommendations(request: Request) -> Response:
    service: Service = request.app.state.service
    user = service.user(request)
    key = (
        _int(request, "k", 10, 1, MAX_K),
        _flag(request, "exclude_seen"),
        _flag(request, "explain"),
    )
    at = parse_request_time(request.query_params.get("at"))
    return JSONResponse(await service.listeners.submit(key, (user, at)))


def new_releases(request: Request) -> Response:
    """The cold items (no training plays) this listener's state ranks highest."""
    service: Service = request.app.state.service
    rec = service.rec
    answer = rec.answer_for_user(
        service.user(request),
        _int(request, "k", 10, 1, MAX_K),
        at=parse_request_time(request.query_params.get("at")),
        explain=_flag(request, "explain"),
        among=rec.cold,
    )
    return JSONResponse(answer)


async def history_recommendations(request: Request) -> Response:
    service: Service = request.app.state.service
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(f'the body is not JSON ({err}): send {{"history": [...]}}') from None
    if not isinstance(body, dict) or not isinstance(body.get("history"), list):
        raise BadRequest('the body needs "history": a list of track ids or "Artist - Title"')
    history = [str(t) for t in body["history"]]
    k = body.get("k", 10)
    exclude_seen, explain = body.get("exclude_seen", False), body.get("explain", False)
    if not isinstance(k, int) or isinstance(k, bool):
        raise BadRequest(f"k={k!r} is not a whole number")
    answer = await run_in_threadpool(
        service.rec.answer_for_history, history, k, bool(exclude_seen), bool(explain)
    )
    return JSONResponse(answer)


def similar(request: Request) -> Response:
    service: Service = request.app.state.service
    item = service.item(request)
    return JSONResponse(service.rec.answer_similar(f"#{item}", _int(request, "k", 10, 1, MAX_K)))


def track(request: Request) -> Response:
    service: Service = request.app.state.service
    item = service.item(request)
    detail = service.rec.track_detail(item)
    base = f"{API}/tracks/{item}"
    detail["cover_url"] = f"{base}/cover.jpg" if detail["modalities"]["cover"] else None
    detail["mel_url"] = f"{base}/mel.png" if detail["modalities"]["audio"] else None
    has_audio = service.audio is not None and item in service.audio.path_of
    detail["audio_url"] = f"{base}/audio" if has_audio else None
    lyrics = service.media.field(item, "lyrics.txt")
    detail["lyrics"] = lyrics.decode("utf-8") if lyrics is not None else None
    return JSONResponse(detail)


def cover(request: Request) -> Response:
    service: Service = request.app.state.service
    data = service.media.field(service.item(request), "cover.jpg")
    if data is None:
        raise UnknownId(f"track {request.path_params['item_id']} has no cover in the shards")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def mel(request: Request) -> Response:
    service: Service = request.app.state.service
    data = service.media.mel_png(service.item(request))
    if data is None:
        raise UnknownId(f"track {request.path_params['item_id']} has no audio in the shards")
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def audio(request: Request) -> Response:
    service: Service = request.app.state.service
    item = service.item(request)
    if service.audio is None:
        raise UnknownId("no audio: start `mirkit serve` with --audio-dir DIR to play tracks")
    path = service.audio.path_of.get(item)
    if path is None:
        raise UnknownId(f"track {item} has no audio file in {service.audio.folder}")
    return FileResponse(path, media_type=AUDIO_TYPES.get(path.suffix.lower()))


def search(request: Request) -> Response:
    service: Service = request.app.state.service
    query = request.query_params.get("q", "")
    return JSONResponse(service.rec.search(query, _int(request, "limit", 20, 1, 200)))


async def page(request: Request) -> Response:
    return FileResponse(Path(str(STATIC / "index.html")), media_type="text/html")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _unknown(request: Request, err: Exception) -> Response:
    return _error(404, str(err))


async def _bad(request: Request, err: Exception) -> Response:
    return _error(400, str(err))


async def _http(request: Request, err: HTTPException) -> Response:
    return _error(err.status_code, f"{err.detail}: {request.method} {request.url.path}")


async def _bug(request: Request, err: Exception) -> Response:
    log.exception("a bug answering %s %s", request.method, request.url.path)
    return _error(500, f"internal error ({type(err).__name__}): this is a bug in mirkit serve")


def create_app(rec: Recommender, audio_dir: Path | None = None, max_batch: int = 64) -> Starlette:
    routes = [
        Route("/", page),
        Route(f"{API}/run", run_identity),
        Route(f"{API}/users/{{user_id}}/recommendations", user_recommendations),
        Route(f"{API}/users/{{user_id}}/new-releases", new_releases),
        Route(f"{API}/recommendations", history_recommendations, methods=["POST"]),
        Route(f"{API}/tracks/{{item_id:int}}", track),
        Route(f"{API}/tracks/{{item_id:int}}/similar", similar),
        Route(f"{API}/tracks/{{item_id:int}}/cover.jpg", cover),
        Route(f"{API}/tracks/{{item_id:int}}/mel.png", mel),
        Route(f"{API}/tracks/{{item_id:int}}/audio", audio),
        Route(f"{API}/search", search),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            UnknownId: _unknown,
            BadRequest: _bad,
            HTTPException: _http,
            Exception: _bug,
        },
    )
    app.state.service = Service(rec, audio_dir, max_batch)
    return app
