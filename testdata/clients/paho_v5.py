#!/usr/bin/python3
"""An MQTT 5 subscriber with Eclipse Paho (Debian's python3-paho-mqtt).

Connects to feedmq over TCP as MQTT 5 with a device's credentials,
subscribes to --sub without a subscription identifier and to --sub-id
with identifier 7, then publishes --count entries "field1=N" to --pub at
QoS 1. Prints every message received as "TOPIC PAYLOAD ids=[...]" (its
subscription identifiers) and exits 0 once it has 2 x --count of them.
Exits 1 on any failure (paho drops the connection on a malformed
property) or after --timeout seconds. Used by broker/session_test.go.
"""
import argparse
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--sub", required=True)
    ap.add_argument("--sub-id", required=True)
    ap.add_argument("--pub", required=True)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()

    kwargs = dict(client_id=args.client_id, protocol=mqtt.MQTTv5)
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
    else:  # paho-mqtt 1.x (Debian 12)
        client = mqtt.Client(**kwargs)
    client.username_pw_set(args.username, args.password)

    done = threading.Event()
    result = {"error": None, "got": 0, "acked": 0}
    lock = threading.Lock()

    def fail(msg):
        result["error"] = msg
        done.set()

    def on_connect(c, userdata, flags, rc, properties=None):
        if rc != 0:
            fail("CONNACK %s" % rc)
            return
        c.subscribe(args.sub, qos=0)
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = 7
        c.subscribe(args.sub_id, qos=0, properties=props)

    def on_subscribe(c, userdata, mid, rcs, properties=None):
        for rc in rcs:
            if rc.value >= 0x80:
                fail("subscription refused: %s" % rc)
                return
        with lock:
            result["acked"] += 1
            if result["acked"] < 2:
                return
        for i in range(args.count):
            c.publish(args.pub, "field1=%d" % (i + 1), qos=1)

    def on_message(c, userdata, msg):
        ids = getattr(msg.properties, "SubscriptionIdentifier", [])
        print("%s %s ids=%s" % (msg.topic, msg.payload.decode(), ids), flush=True)
        result["got"] += 1
        if result["got"] == 2 * args.count:
            done.set()

    def on_disconnect(c, userdata, rc, properties=None):
        if not done.is_set():
            fail("disconnected: %s" % rc)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as e:
        print("connect: %s" % e, file=sys.stderr)
        return 1
    client.loop_start()
    ok = done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    if not ok:
        print("timed out after %gs" % args.timeout, file=sys.stderr)
        return 1
    if result["error"]:
        print(result["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
