#!/usr/bin/python3
"""A persistent-session client with Eclipse Paho (Debian's python3-paho-mqtt).

Connects to feedmq over TCP as MQTT 3.1.1 (--v311, CleanSession=0) or
MQTT 5 (Clean Start=0 with Session Expiry Interval --expiry) with a
device's credentials and prints "present=0|1" from the CONNACK. Then,
for each --sub, subscribes at --qos and prints "suback FILTER CODE";
for each --pub TOPIC=PAYLOAD, publishes at --qos (retained with
--retain) and waits for its acknowledgement; then prints every message
received as "TOPIC PAYLOAD qos=N retain=N" until it has --count of them
(0: none expected; it waits --linger seconds for strays), and
disconnects cleanly. Exits 1 on any failure or after --timeout seconds.
Used by broker/free_clients_test.go.
"""
import argparse
import sys
import threading
import time

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
    ap.add_argument("--v311", action="store_true")
    ap.add_argument("--expiry", type=int, default=300)
    ap.add_argument("--sub", action="append", default=[])
    ap.add_argument("--pub", action="append", default=[])
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--retain", action="store_true")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--linger", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()

    proto = mqtt.MQTTv311 if args.v311 else mqtt.MQTTv5
    kwargs = dict(client_id=args.client_id, protocol=proto)
    if args.v311:
        kwargs["clean_session"] = False
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
    else:  # paho-mqtt 1.x (Debian 12)
        client = mqtt.Client(**kwargs)
    client.username_pw_set(args.username, args.password)

    connected = threading.Event()
    subscribed = threading.Event()
    done = threading.Event()
    state = {"error": None, "got": 0, "pending_subs": len(args.sub)}
    lock = threading.Lock()

    def fail(msg):
        state["error"] = msg
        connected.set()
        subscribed.set()
        done.set()

    def on_connect(c, userdata, flags, rc, properties=None):
        if rc != 0:
            fail("CONNACK %s" % rc)
            return
        print("present=%d" % flags.get("session present", 0), flush=True)
        connected.set()

    def on_subscribe(c, userdata, mid, rcs, properties=None):
        with lock:
            state["pending_subs"] -= 1
            if state["pending_subs"] <= 0:
                subscribed.set()

    def on_message(c, userdata, msg):
        print("%s %s qos=%d retain=%d" % (msg.topic, msg.payload.decode(), msg.qos, msg.retain), flush=True)
        with lock:
            state["got"] += 1
            if args.count and state["got"] >= args.count:
                done.set()

    def on_disconnect(c, userdata, rc, properties=None):
        if not done.is_set():
            fail("disconnected: %s" % rc)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    try:
        if args.v311:
            client.connect(args.host, args.port, keepalive=30)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = args.expiry
            client.connect(args.host, args.port, keepalive=30, clean_start=False, properties=props)
    except Exception as e:
        print("connect: %s" % e, file=sys.stderr)
        return 1
    client.loop_start()
    deadline = time.monotonic() + args.timeout
    if not connected.wait(args.timeout) or state["error"]:
        print(state["error"] or "no CONNACK", file=sys.stderr)
        return 1
    for f in args.sub:
        rc, mid = client.subscribe(f, qos=args.qos)
        if rc != 0:
            print("subscribe %s: %s" % (f, rc), file=sys.stderr)
            return 1
    if args.sub and not subscribed.wait(max(0, deadline - time.monotonic())):
        print("no SUBACK", file=sys.stderr)
        return 1
    for p in args.pub:
        topic, _, payload = p.partition("=")
        info = client.publish(topic, payload, qos=args.qos, retain=args.retain)
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        if not info.is_published():
            print("publish %s: not acknowledged" % topic, file=sys.stderr)
            return 1
    if args.count:
        ok = done.wait(max(0, deadline - time.monotonic()))
        if not ok:
            print("timed out after %gs with %d messages" % (args.timeout, state["got"]), file=sys.stderr)
            return 1
    time.sleep(args.linger)
    done.set()
    if not args.v311:
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = args.expiry
        client.disconnect(properties=props)
    else:
        client.disconnect()
    client.loop_stop()
    if state["error"]:
        print(state["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
