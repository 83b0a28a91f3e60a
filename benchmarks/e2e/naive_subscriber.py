"""The script everyone writes first: paho at QoS 1 with a persistent session, json.loads per
message, a set against duplicates, an if for the alarm, influxdb-client with a Point per
reading and the batching write API. The end-to-end benchmark's baseline; plain, idiomatic, not
sabotaged.

    python naive_subscriber.py --port 1883 --store-url http://127.0.0.1:8428

Prints "ready" once subscribed; SIGTERM flushes the write buffer and exits.
"""

# influxdb-client has no type annotations
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from types import FrameType

import paho.mqtt.client as mqtt
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import WriteOptions
from paho.mqtt.enums import CallbackAPIVersion

READINGS = "sensing/v1/+/+/readings"
ALARMS = {"sos": 1.0, "obscuration": 8.0, "gas_lel": 10.0}
"""channel -> the value at which a reading is an alarm"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--store-url", default="http://127.0.0.1:8428")
    ap.add_argument("--client-id", default="naive-subscriber")
    args = ap.parse_args(argv)

    influx = InfluxDBClient(url=args.store_url, token="none", org="sensing")
    write_api = influx.write_api(write_options=WriteOptions(batch_size=5_000,
                                                           flush_interval=1_000))
    seen: set[tuple[str, int, int]] = set()

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object,
                   props: object) -> None:
        client.subscribe(READINGS, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, reasons: object,
                     props: object) -> None:
        print("ready", flush=True)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        _, _, area, gateway, _ = msg.topic.split("/")
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        for r in data if isinstance(data, list) else [data]:
            key = (r["device"], r.get("epoch", 0), r["seq"])
            if key in seen:
                continue
            seen.add(key)
            values = r["values"]
            for channel, limit in ALARMS.items():
                if values.get(channel, 0) >= limit:
                    alert = {"device": r["device"], "type": f"{r['kind']}.{channel}",
                             "area": area, "gateway": gateway, "ts_event": r["ts"],
                             "ts_raised": int(time.time() * 1000), "value": values[channel]}
                    client.publish(f"sensing/v1/alerts/{area}", json.dumps(alert), qos=1)
            p = (Point("reading").tag("area", area).tag("gateway", gateway)
                 .tag("device", r["device"]).tag("kind", r["kind"]))
            for channel, v in values.items():
                p = p.field(channel, float(v))
            if "battery" in r:
                p = p.field("battery", float(r["battery"]))
            p = p.field("seq", r["seq"]).field("epoch", r.get("epoch", 0))
            write_api.write(bucket="sensing", record=p.time(r["ts"], write_precision="ms"))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id,
                         clean_session=False)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    def on_term(signum: int, frame: FrameType | None) -> None:
        client.disconnect()

    signal.signal(signal.SIGTERM, on_term)
    client.connect(args.host, args.port)
    client.loop_forever()
    write_api.close()
    influx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
