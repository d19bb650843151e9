package broker_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/browsertest"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestBrowserWebSocket: a page in headless Chromium speaks MQTT over the
// browser's own WebSocket, whose frames the broker decodes itself: it
// connects as a device, subscribes to its channel, publishes a payload
// over 125 bytes (a 16-bit frame length) at QoS 1, gets the PUBACK and its
// own entry back, pings and closes normally, and the close is echoed.
func TestBrowserWebSocket(t *testing.T) {
	chrome := browsertest.Chromium(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>mqtt over websocket</title>")
	}))
	defer page.Close()
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", WSAllowedOrigins: []string{page.URL}})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	connect := mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 30}.Encode()
	long := strings.Repeat("7", 200) // values are at most 255 characters
	payload := "field1=" + long + "&field2=" + long
	topic := fmt.Sprintf("channels/%d/publish", ch)
	publish := mqttPacket(0x32, append(append(binary.BigEndian.AppendUint16(nil, uint16(len(topic))), topic...), append([]byte{0, 9}, payload...)...))
	args, _ := json.Marshal(map[string]any{
		"url":       ts.wsURL("ws", "/mqtt"),
		"connect":   connect,
		"subscribe": subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)),
		"publish":   publish,
	})
	// The page records the first bytes of the packets the broker sends,
	// and the entry delivered to it.
	script := `(async (a) => { let stage = "open"; const run = async () => {
		const bytes = (b64) => Uint8Array.from(atob(b64), c => c.charCodeAt(0));
		const ws = new WebSocket(a.url, "mqtt");
		ws.binaryType = "arraybuffer";
		const got = [];
		let entry = "";
		const closed = new Promise(resolve => ws.onclose = e => resolve(e.code));
		await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
		// MQTT over WebSocket is a byte stream: a message may hold
		// several packets (the broker batches a delivery with a PUBACK).
		let buf = new Uint8Array(0), wake = null;
		ws.onmessage = e => {
			const m = new Uint8Array(e.data), b = new Uint8Array(buf.length + m.length);
			b.set(buf); b.set(m, buf.length); buf = b;
			if (wake) { wake(); wake = null; }
		};
		const next = async () => {
			for (;;) {
				let len = 0, mult = 1, i = 1;
				for (; i < buf.length; i++) {
					len += (buf[i] & 127) * mult; mult *= 128;
					if (!(buf[i] & 128)) break;
				}
				if (i < buf.length && buf.length >= i + 1 + len) {
					const p = buf.slice(0, i + 1 + len);
					buf = buf.slice(i + 1 + len);
					return p;
				}
				await new Promise(resolve => wake = resolve);
			}
		};
		const send = async (b) => { const p = next(); ws.send(b); return p; };
		stage = "connect";
		let m = await send(bytes(a.connect)); got.push(m[0], m[3]);
		stage = "subscribe";
		m = await send(bytes(a.subscribe)); got.push(m[0]);
		stage = "publish";
		ws.send(bytes(a.publish));
		for (let i = 0; i < 2; i++) {
			m = await next(); got.push(m[0]);
			if (m[0] === 0x30) entry = new TextDecoder().decode(m);
		}
		stage = "ping";
		m = await send(new Uint8Array([0xc0, 0])); got.push(m[0]);
		stage = "close";
		ws.close(1000, "done");
		return JSON.stringify({got, entry, code: await closed});
		};
		const timeout = new Promise(resolve => setTimeout(() => resolve(JSON.stringify({stage})), 20000));
		return Promise.race([run(), timeout]);
	})(` + string(args) + `)`
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	bctx, stop := browsertest.New(ctx, t, chrome, 800, 600)
	defer stop()
	if _, err := chromedp.Run(bctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	out, err := chromedp.Run(bctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Stage string
		Got   []int
		Entry string
		Code  int
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Stage != "" {
		t.Fatalf("no answer from the broker at %s", res.Stage)
	}
	// CONNACK (return code 0), SUBACK, the PUBACK and the delivery in
	// either order, PINGRESP.
	got := fmt.Sprint(res.Got)
	if got != "[32 0 144 64 48 208]" && got != "[32 0 144 48 64 208]" {
		t.Errorf("packets from the broker: %s", got)
	}
	if !strings.Contains(res.Entry, `"field2":"`+long+`"`) || !strings.Contains(res.Entry, `"entry_id":1`) {
		t.Errorf("entry delivered: %s", res.Entry)
	}
	if res.Code != 1000 {
		t.Errorf("close code %d, want 1000 echoed", res.Code)
	}
}

// TestBrowserWebSocketPingsAndCloses: Chromium's own WebSocket talks MQTT to the broker:
// CONNECT, a 60 KB message of PINGREQs (fragmented or not, as the
// browser likes), the answers, a close with code 4000 echoed cleanly, and
// a server-initiated close after DISCONNECT seen as clean with code 1000.
func TestBrowserWebSocketPingsAndCloses(t *testing.T) {
	chrome := browsertest.Chromium(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!doctype html><title>ws</title>"))
	}))
	defer page.Close()
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true, WSAllowedOrigins: []string{page.URL}})
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 800, 600)
	defer cancelBrowser()
	url := "ws://" + ts.addrOf("ws") + "/mqtt"
	script := `
const url = ` + "`" + url + "`" + `;
function open() {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(url, "mqtt");
    ws.binaryType = "arraybuffer";
    ws.bytes = [];
    ws.onmessage = (e) => ws.bytes.push(...new Uint8Array(e.data));
    ws.onopen = () => ok(ws);
    ws.onerror = () => fail("error");
  });
}
function until(ws, n) {
  return new Promise((ok, fail) => {
    const t0 = Date.now();
    const tick = () => ws.bytes.length >= n ? ok() : (Date.now() - t0 > 10000 ? fail("only " + ws.bytes.length + " bytes") : setTimeout(tick, 5));
    tick();
  });
}
function closed(ws) {
  return new Promise((ok) => { if (ws.readyState === 3) ok(ws.closeInfo); ws.onclose = (e) => ok(e.code + "/" + e.wasClean); });
}
function connect(id) {
  const enc = new TextEncoder();
  const cid = enc.encode(id);
  const body = [0, 4, 77, 81, 84, 84, 4, 2, 0, 30, 0, cid.length, ...cid];
  return new Uint8Array([0x10, body.length, ...body]);
}
(async () => {
  const out = [];
  const a = await open();
  a.send(connect("browser-a"));
  await until(a, 4);
  out.push("connack:" + a.bytes.slice(0, 4).join(","));
  const n = 30000;
  const pings = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) { pings[2*i] = 0xc0; }
  a.send(pings);
  await until(a, 4 + 2 * n);
  out.push("pingresps:" + (a.bytes.length - 4) / 2);
  const ca = closed(a);
  a.close(4000, "bye");
  out.push("close:" + await ca);
  const b = await open();
  b.send(connect("browser-b"));
  await until(b, 4);
  const cb = closed(b);
  b.send(new Uint8Array([0xe0, 0]));
  out.push("disconnect:" + await cb);
  return out.join(" ");
})()`
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	want := "connack:32,2,0,0 pingresps:30000 close:4000/true disconnect:1000/true"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
