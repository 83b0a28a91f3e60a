"""Node-RED as a peer in the end-to-end benchmark: the same job as the core, done the way a
Node-RED user would, with npm's `node-red` and `node-red-contrib-influxdb`.

    node_red = NodeRed()
    node_red.install()                       # npm ci into .bench/node-red, once
    node_red.start(broker.port, store.url, workdir)
    ... publish ...; node_red.stored(store); node_red.stop()

The flow (nodered_flow.json, the default "per-message"): mqtt in (sensing/v1/+/+/readings,
QoS 1, persistent session of a fixed client id) -> json -> a function node that takes a whole
message's readings at once: refuses a malformed reading with a logged reason, drops repeats of
(device, epoch, seq) with a Set in its context (the newest 1,000,000 keys, oldest evicted
first), builds the points and flags alarms -> a join node (100 messages' points, or what came
within 1 s) -> a function node that flattens them -> influxdb batch (InfluxDB 2.0 API at the
store, org/bucket "sensing", measurement = kind, tags device/gateway/area, fields the values,
battery, seq and epoch, ms timestamps); an alarm goes to mqtt out on sensing/v1/alerts/{area}
(QoS 1). Alarms: a wearable with values.sos >= 1, a smoke detector with obscuration >= 0.5.
It is the flow of a user who measured: a function node costs ~20 us a call in Node-RED's vm
sandbox (the same body as a plain function: 4.5 us a reading), so one call per message, and
one store write per many readings.

Two flows of the shape most tutorials show, one message per reading (a function node splits
the array, the next one drops repeats and flags alarms), for comparison (`NodeRed(flow=...)`):
- "per-reading-joined" (nodered_flow_per_reading_joined.json): the points joined into influxdb
  batch writes of 1,000 (or what came within 1 s): about twice the CPU per reading of the
  default at 100 readings per message, the same at one;
- "per-reading" (nodered_flow_per_reading.json): each reading to an influxdb out node, which
  flushes every message: one HTTP write per reading with nothing to hold the broker back, so
  at full rate thousands of writes are in flight and readings are lost to timeouts (it
  collapses: 5 % stored at 1 reading per message, 7 % at 100).

In VictoriaMetrics each field becomes the metric `<kind>_<field>`, so the samples of
`<kind>_seq` are the stored readings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from sensing.services import LOOPBACK, VictoriaMetrics, free_port, terminate_group
from sensing.testing.counting import ReadingKey

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
DEFAULT_CACHE_DIR = PROJECT_ROOT / ".bench" / "node-red"
FLOWS = {"per-message": HERE / "nodered_flow.json",
         "per-reading-joined": HERE / "nodered_flow_per_reading_joined.json",
         "per-reading": HERE / "nodered_flow_per_reading.json"}
DEFAULT_FLOW = "per-message"
PACKAGE_JSON = HERE / "nodered_package.json"
PACKAGE_LOCK = HERE / "nodered_package-lock.json"

CLIENT_ID = "sensing-bench-node-red"
READINGS_FILTER = "sensing/v1/+/+/readings"
KINDS = ("smoke", "manhole", "wearable")
STORED_MATCH = '{__name__=~"(' + "|".join(KINDS) + ')_seq"}'
MIN_NODE_MAJOR = 18  # node-red 4.1 needs Node.js >= 18.5
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
FUTURE_S = 100 * 86400
"""readings may carry clock-skewed future times: count up to this far ahead"""
OLDEST_S = 946_684_800
"""2000-01-01: the flow refuses older readings"""
CONNECTED = re.compile(rb"\[mqtt-broker:mosquitto\] Connected to broker")


class NodeRedError(RuntimeError):
    pass


class NodeRed:
    """One Node-RED process running the benchmark flow against a broker and a store."""

    name = "node-red"

    def __init__(self, cache_dir: Path | None = None, flow: str = DEFAULT_FLOW) -> None:
        if flow not in FLOWS:
            raise ValueError(f"flow {flow!r}: one of {', '.join(FLOWS)}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
        self.flow_file = FLOWS[flow]
        if flow != DEFAULT_FLOW:
            self.name = f"node-red ({flow})"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            return False, "node and npm are not installed (apt-get install -y nodejs npm)"
        try:
            version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                     timeout=30, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"node --version failed: {exc}"
        major = re.match(r"v(\d+)\.", version)
        if major is None or int(major.group(1)) < MIN_NODE_MAJOR:
            return False, f"node {version} is too old for node-red 4.1 (needs >= 18.5)"
        return True, f"node {version}"

    @property
    def red_js(self) -> Path:
        return self.cache_dir / "node_modules" / "node-red" / "red.js"

    def _wanted_stamp(self) -> str:
        digest = hashlib.sha256(PACKAGE_JSON.read_bytes())
        if PACKAGE_LOCK.exists():
            digest.update(PACKAGE_LOCK.read_bytes())
        return digest.hexdigest()

    def install(self) -> None:
        """npm ci the pinned packages into the cache folder; nothing when already there."""
        stamp = self.cache_dir / ".installed"
        wanted = self._wanted_stamp()
        if self.red_js.exists() and stamp.exists() and stamp.read_text() == wanted:
            return
        ok, reason = self.available()
        if not ok:
            raise NodeRedError(reason)
        deps = json.loads(PACKAGE_JSON.read_text())["dependencies"]
        print(f"node-red: installing {', '.join(f'{k} {v}' for k, v in deps.items())} "
              f"into {self.cache_dir} (npm, about 20 s)", file=sys.stderr, flush=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # everything here is a download: keep it out of git without touching .gitignore
        (self.cache_dir / ".gitignore").write_text("*\n")
        shutil.copyfile(PACKAGE_JSON, self.cache_dir / "package.json")
        command = ["npm", "install"]
        if PACKAGE_LOCK.exists():
            shutil.copyfile(PACKAGE_LOCK, self.cache_dir / "package-lock.json")
            command = ["npm", "ci"]
        command += ["--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(command, cwd=self.cache_dir, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise NodeRedError(f"{' '.join(command)} took over {INSTALL_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0 or not self.red_js.exists():
            raise NodeRedError(f"{' '.join(command)} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr)[-2000:]}")
        stamp.write_text(wanted)

    def start(self, broker_port: int, store_url: str, workdir: Path) -> None:
        """Start Node-RED with the flow; returns once the flow runs and its MQTT client is
        connected. Every reading published after start() reaches the flow: the persistent
        session's subscription is made before Node-RED starts."""
        if self.proc is not None:
            raise NodeRedError("already started")
        if not self.red_js.exists():
            raise NodeRedError(f"node-red is not installed in {self.cache_dir}: call install()")
        user_dir = Path(workdir) / "node-red"
        user_dir.mkdir(parents=True, exist_ok=True)
        (user_dir / "flows.json").write_text(
            json.dumps(flow_for(self.flow_file, broker_port, store_url), indent=1))
        (user_dir / "settings.js").write_text(settings_js(user_dir, free_port()))
        subscribe_session(broker_port)
        self.log_path = user_dir / "node-red.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", str(self.red_js), "--settings", str(user_dir / "settings.js"),
                 "--userDir", str(user_dir)],
                cwd=user_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "NODE_ENV": "production"},
            )
        self._wait_connected()

    def _wait_connected(self) -> None:
        assert self.proc is not None and self.log_path is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if CONNECTED.search(self.log_path.read_bytes()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise NodeRedError(f"node-red did not connect to the broker in {START_TIMEOUT_S:.0f} s: "
                           f"{tail}")

    def pids(self) -> list[int]:
        """The node process (the benchmark adds its children)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid]

    def stored(self, store: VictoriaMetrics) -> int:
        """Readings stored: samples of every `<kind>_seq` series, counted by the store (one
        PromQL query, cheap enough to poll every second)."""
        store.flush()
        end = int(time.time()) + FUTURE_S
        window = end - OLDEST_S  # a window reaching back before 1970 finds nothing
        query = urllib.parse.urlencode({
            "query": f"sum(count_over_time({STORED_MATCH}[{window}s]))", "time": str(end)})
        with urllib.request.urlopen(f"{store.url}/api/v1/query?{query}", timeout=60) as r:
            result = json.loads(r.read())["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def stored_keys(self, store: VictoriaMetrics) -> Counter[ReadingKey]:
        """Samples per (gateway, device, epoch, seq), the epoch joined from `<kind>_epoch` at
        the same (gateway, device, ts); a reading without one counts as epoch -1."""
        out: Counter[ReadingKey] = Counter()
        for kind in KINDS:
            epochs: dict[tuple[str, str, int], int] = {}
            for gateway, device, stamps, values in _series(store, f"{kind}_epoch"):
                for ts, v in zip(stamps, values, strict=True):
                    epochs[(gateway, device, ts)] = int(v)
            for gateway, device, stamps, values in _series(store, f"{kind}_seq"):
                for ts, v in zip(stamps, values, strict=True):
                    out[(gateway, device, epochs.get((gateway, device, ts), -1), int(v))] += 1
        return out

    def stop(self) -> None:
        if self.proc is not None:
            terminate_group(self.proc)
            self.proc = None


def _series(store: VictoriaMetrics, metric: str
            ) -> list[tuple[str, str, list[int], list[float]]]:
    out = []
    for s in store.export(f'{{__name__="{metric}"}}'):
        labels = s["metric"]
        stamps, values = s["timestamps"], s["values"]
        assert isinstance(labels, dict) and isinstance(stamps, list) and isinstance(values, list)
        out.append((str(labels.get("gateway", "")), str(labels.get("device", "")),
                    [int(t) for t in stamps], [float(v) for v in values]))
    return out


def flow_for(flow_file: Path, broker_port: int, store_url: str) -> list[dict[str, object]]:
    """The flow file with the broker's port and the store's URL filled in."""
    flow: list[dict[str, object]] = json.loads(flow_file.read_text())
    filled = set()
    for node in flow:
        if node["type"] == "mqtt-broker":
            node.update(broker=LOOPBACK, port=str(broker_port), clientid=CLIENT_ID)
            filled.add("broker")
        elif node["type"] == "influxdb":
            node["url"] = store_url
            filled.add("store")
    if filled != {"broker", "store"}:
        raise NodeRedError(f"{flow_file} lacks an mqtt-broker or influxdb config node")
    return flow


def settings_js(user_dir: Path, ui_port: int) -> str:
    """Headless on loopback: no editor, no admin API, no HTTP nodes, no installs, logs at
    info (start-up and connection lines only: the flow logs nothing per message)."""
    settings = {
        "uiHost": LOOPBACK,
        "uiPort": ui_port,
        "httpAdminRoot": False,
        "httpNodeRoot": False,
        "disableEditor": True,
        "userDir": str(user_dir),
        "flowFile": "flows.json",
        "credentialSecret": False,
        "diagnostics": {"enabled": False, "ui": False},
        "runtimeState": {"enabled": False, "ui": False},
        "telemetry": {"enabled": False, "updateNotification": False},
        "externalModules": {"autoInstall": False, "palette": {"allowInstall": False},
                            "modules": {"allowInstall": False}},
        "functionExternalModules": False,
        "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
        "contextStorage": {"default": {"module": "memory"}},
    }
    return "module.exports = " + json.dumps(settings, indent=2) + ";\n"


def subscribe_session(broker_port: int, timeout: float = 15.0) -> None:
    """Make the flow's persistent session and its QoS 1 subscription before Node-RED runs,
    so the broker queues every reading published from now on for it."""
    granted: list[int] = []

    def on_subscribe(c: mqtt.Client, u: object, mid: int, reasons: list[ReasonCode],
                     p: object) -> None:
        if not any(r.is_failure for r in reasons):
            granted.append(mid)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, clean_session=False)
    client.on_subscribe = on_subscribe
    client.connect(LOOPBACK, broker_port)
    client.loop_start()
    try:
        _, mid = client.subscribe(READINGS_FILTER, qos=1)
        deadline = time.monotonic() + timeout
        while mid not in granted and time.monotonic() < deadline:
            time.sleep(0.02)
        if mid not in granted:
            raise NodeRedError(f"the broker on port {broker_port} did not grant the subscription")
    finally:
        client.disconnect()
        client.loop_stop()
