"""Responders act on cases over HTTP: `POST /v1/actions` with a bearer token.

The token names the person (its SHA-256 is `api_token_sha256` in the directory), so nobody can
act in another's name; the action goes to the core as the contract's ack of that person, on
`sensing/v1/ack/{person}`, and the answer is the core's verdict (applied, or refused with the
dead letter's reason and code). The core alone decides: this process only proves who is
asking. It runs apart from the core, so a flood of requests never slows ingestion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sensing.dispatch.directory import Directory, DirectoryError, load_directory
from sensing.operator import AckResult, Client, Verdict, send_ack
from sensing.wire.messages import Ack

log = structlog.get_logger("sensing.api")

MAX_BODY = 8 * 1024
"""bytes of a request body, at most"""


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    case: str = Field(min_length=1, max_length=128)
    """the case's id, or any of its alerts'"""
    action: str = Field(pattern="^(ack|resolve|take|arrived|dispose|reassign)$")
    outcome: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=1000)
    to: str | None = Field(default=None, min_length=1, max_length=128)


class DirectoryFile:
    """The directory, loaded again when its file changes (a bad new file keeps the old)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = path.stat().st_mtime_ns
        self.directory = load_directory(path)

    def current(self) -> Directory:
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._mtime = mtime
                self.directory = load_directory(self.path)
        except (OSError, DirectoryError) as exc:
            log.error("directory not reloaded; the current one stays", error=str(exc)[:500])
        return self.directory


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_app(directory: DirectoryFile, connect: Callable[[], Client],
               wait_s: float = 5.0) -> Starlette:
    """`connect` gives a connected broker client (one per request: each waits for its own
    verdict)."""

    def act(ack: Ack) -> AckResult:
        client = connect()
        try:
            return send_ack(client, ack, wait_s)
        finally:
            client.close()

    async def actions(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        person = directory.current().bearer(token_hash(token)) if (
            scheme.lower() == "bearer" and token) else None
        if person is None:
            return JSONResponse({"error": "a valid bearer token is needed"}, 401,
                                headers={"WWW-Authenticate": "Bearer"})
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, 413)
        try:
            wanted = ActionBody.model_validate_json(body)
            ack = Ack.model_validate({"alert_id": wanted.case, "by": person.id,
                                      "action": wanted.action, "outcome": wanted.outcome,
                                      "note": wanted.note, "to": wanted.to})
        except ValidationError as exc:
            return JSONResponse({"error": "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])}, 422)
        try:
            result = await run_in_threadpool(act, ack)
        except ConnectionError as exc:
            return JSONResponse({"error": f"no broker: {exc}"}, 503)
        log.info("action", by=person.id, action=ack.action, case=ack.alert_id,
                 verdict=result.verdict.name)
        status = {Verdict.APPLIED: 200, Verdict.REFUSED: 409, Verdict.UNCONFIRMED: 202}
        return JSONResponse({"verdict": result.verdict.name.lower(), "by": person.id,
                             "text": result.text}, status[result.verdict])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/v1/actions", actions, methods=["POST"]),
                             Route("/v1/health", health, methods=["GET"])])
