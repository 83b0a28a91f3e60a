"""Responders act over HTTP (`sensing api`): a real uvicorn server, a real Mosquitto and the
core. The bearer token names the person; nobody acts without one or in another's name."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import urllib3
import uvicorn

from sensing.api.actions import DirectoryFile, create_app, token_hash
from sensing.operator import Client
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.wire import topics
from sensing_edge.security import BrokerSecurity
from tests.dispatch.test_dispatch_live import directory, dispatched, fire
from tests.helpers import Listener, publisher, running_core, wait_until

pytestmark = pytest.mark.e2e

TOKENS = {"grid-1": "t-grid-1-" + "x" * 32, "grid-2": "t-grid-2-" + "y" * 32}


def with_tokens(path: Path) -> Path:
    text = path.read_text()
    for person, token in TOKENS.items():
        text = text.replace(f'id = "{person}"\n',
                            f'id = "{person}"\napi_token_sha256 = "{token_hash(token)}"\n')
    path.write_text(text)
    return path


@pytest.fixture
def api(broker: Mosquitto, tmp_path: Path) -> Iterator[str]:
    path = with_tokens(directory(tmp_path / "dir.toml", "http://127.0.0.1:9", 600, 1200))
    security = BrokerSecurity()
    app = create_app(DirectoryFile(path),
                     lambda: Client("127.0.0.1", broker.port, security).connect(), 5.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def post(url: str, body: object, token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = urllib3.request("POST", url + "/v1/actions", body=orjson.dumps(body)
                        if not isinstance(body, bytes) else body, headers=headers, timeout=15)
    return r.status, orjson.loads(r.data)


def test_a_responder_takes_a_case_over_http_and_strangers_are_refused(
        api: str, broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path) -> None:
    listener = Listener(broker, topics.DISPATCH_FILTER, topics.CASES_FILTER)
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core",
                      directory_file=with_tokens(directory(tmp_path / "core-dir.toml",
                                                           "http://127.0.0.1:9", 600, 1200))):
        fire(pub, int(time.time() * 1000) - 10_000)
        assert wait_until(lambda: bool(dispatched(listener)), 20)
        case = str(dispatched(listener)[0]["case_id"])
        take = {"case": case, "action": "take"}

        assert post(api, take, None)[0] == 401
        assert post(api, take, "not-a-token")[0] == 401
        assert post(api, {"case": case, "action": "steal"}, TOKENS["grid-1"])[0] == 422
        assert post(api, b"x" * 9000, TOKENS["grid-1"])[0] == 413
        status, doc = post(api, take, TOKENS["grid-2"])  # a grid worker of another community
        assert status == 409 and "ack_not_authorized" in str(doc["text"]), doc

        status, doc = post(api, take, TOKENS["grid-1"])
        assert (status, doc["verdict"], doc["by"]) == (200, "applied", "grid-1"), doc
        assert str(doc["text"]).startswith("taken: case " + case)
        status, doc = post(api, {"case": case, "action": "dispose", "outcome": "fire",
                                 "note": "out"}, TOKENS["grid-1"])
        assert status == 200 and str(doc["text"]).startswith("disposed as fire"), doc
    assert [c["by"] for c in listener.json("sensing/v1/cases/")
            if c["event"] in ("taken", "disposed")] == ["grid-1", "grid-1"]
    listener.close()
