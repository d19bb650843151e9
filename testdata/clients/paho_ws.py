#!/usr/bin/python3
"""MQTT over WebSocket with Eclipse Paho (Debian's python3-paho-mqtt).

Connects to feedmq at ws://HOST:PORT/mqtt (wss:// with --cafile), as MQTT
3.1.1 with a device's credentials, subscribes to --sub, publishes
--message to --pub at QoS 1 once subscribed, and prints the first
message received as "TOPIC PAYLOAD". Exits 1 on any failure or after
--timeout seconds. Used by broker/transport_test.go.
"""
import argparse
import sys
import threading

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/mqtt")
    ap.add_argument("--cafile", help="CA certificate (PEM): use wss")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--sub", required=True)
    ap.add_argument("--pub", required=True)
    ap.add_argument("--message", required=True)
    ap.add_argument("--timeout", type=float, default=5)
    args = ap.parse_args()

    kwargs = dict(client_id=args.client_id, clean_session=True,
                  protocol=mqtt.MQTTv311, transport="websockets")
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
    else:  # paho-mqtt 1.x (Debian 12)
        client = mqtt.Client(**kwargs)
    client.ws_set_options(path=args.path)
    if args.cafile:
        client.tls_set(ca_certs=args.cafile)
    client.username_pw_set(args.username, args.password)

    done = threading.Event()
    result = {"error": None}

    def fail(msg):
        result["error"] = msg
        done.set()

    def on_connect(c, userdata, flags, rc):
        if rc != 0:
            fail("CONNACK %d: %s" % (rc, mqtt.connack_string(rc)))
            return
        c.subscribe(args.sub, qos=0)

    def on_subscribe(c, userdata, mid, granted_qos):
        if granted_qos[0] == 0x80:
            fail("subscription to %s refused" % args.sub)
            return
        c.publish(args.pub, args.message, qos=1)

    def on_message(c, userdata, msg):
        print("%s %s" % (msg.topic, msg.payload.decode()), flush=True)
        done.set()

    def on_disconnect(c, userdata, rc):
        if not done.is_set():
            fail("disconnected: %s" % mqtt.error_string(rc))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as e:  # refused handshake, TLS error, ...
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
