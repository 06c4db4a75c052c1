package websocket_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/browser"
	"github.com/busbar/busbar/websocket"
)

// chatPage connects MQTT.js (path /mqtt) and nats.ws to busbar from a
// real browser, says "ready", waits for a message from Go on each, and
// publishes one of its own from each.
const chatPage = `<!doctype html><html><body><script type="module">
import mqtt from '/mqtt.esm.js';
import { connect, StringCodec } from '/nats.js';
const url = 'WSURL';
const sc = StringCodec();
const got = {};
try {
  const nc = await connect({ servers: url });
  const natsSub = nc.subscribe('chat.fromgo');
  const m = mqtt.connect(url + '/mqtt', { clientId: 'browser-1', protocolVersion: 5 });
  await new Promise((ok, fail) => { m.on('connect', ok); m.on('error', fail); });
  const mqttGot = new Promise(ok => m.on('message', (topic, payload) => ok(topic + '=' + payload.toString())));
  await m.subscribeAsync('chat/fromgo', { qos: 1 });
  await nc.flush();
  nc.publish('chat.ready', sc.encode('ready'));
  for await (const msg of natsSub) { got.nats = msg.subject + '=' + sc.decode(msg.data); break; }
  got.mqtt = await mqttGot;
  await m.publishAsync('chat/frombrowser', 'hi from MQTT.js', { qos: 1 });
  nc.publish('chat.frombrowser', sc.encode('hi from nats.ws'));
  await nc.flush();
  await nc.close();
  m.end();
} catch (e) { got.error = String(e); }
window.__result = got; window.__done = true;
</script></body></html>`

// TestBrowserChat: MQTT.js and nats.ws in Debian's chromium exchange
// messages with a Go client through busbar's WebSocket transport.
func TestBrowserChat(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{})
	local, err := e.b.Local("go-side")
	require.NoError(t, err)
	ready := make(chan struct{}, 1)
	fromBrowser := make(chan string, 4)
	_, err = local.Subscribe("chat.>", func(m *broker.Message) {
		switch string(m.Subject) {
		case "chat.ready":
			ready <- struct{}{}
		case "chat.frombrowser":
			fromBrowser <- string(m.Payload)
		}
	})
	require.NoError(t, err)
	go func() {
		select {
		case <-ready:
			_ = local.Publish("chat.fromgo", []byte("hi from Go"))
		case <-time.After(60 * time.Second):
		}
	}()

	page := browser.Page(t, strings.ReplaceAll(chatPage, "WSURL", e.wsURL()))
	res := browser.Run(t, page, 45*time.Second)
	var got map[string]string
	require.NoError(t, json.Unmarshal(res.Value, &got), "console: %q", res.Console)
	require.Empty(t, got["error"], "console: %q", res.Console)
	require.Equal(t, "chat.fromgo=hi from Go", got["nats"])
	require.Equal(t, "chat/fromgo=hi from Go", got["mqtt"])
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case p := <-fromBrowser:
			seen[p] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("from the browser only %v", seen)
		}
	}
	require.True(t, seen["hi from MQTT.js"] && seen["hi from nats.ws"], "%v", seen)
}

// refusalPage opens raw WebSockets and reports each close code and
// reason, which is all a browser can see of a refused upgrade.
const refusalPage = `<!doctype html><html><body><script type="module">
const out = {};
function probe(name, url) {
  return new Promise(ok => {
    const ws = new WebSocket(url);
    ws.onclose = ev => { out[name] = { code: ev.code, reason: ev.reason }; ok(); };
  });
}
await probe('none', 'WSURL/');
await probe('wrong', 'WSURL/?apikey=wrong');
await probe('good', 'WSURL/?apikey=KEY&then=close');
window.__result = out; window.__done = true;
</script></body></html>`

// TestBrowserCloseOnFailure: with on_failure "close" the browser reads
// why it was refused (4401 and the one-line reason).
func TestBrowserCloseOnFailure(t *testing.T) {
	a, err := auth.New(auth.Options{Users: []auth.User{{Name: "web", APIKey: apiKey}}})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a, AuthTimeout: 500 * time.Millisecond}, websocket.Options{
		Handshake: websocket.Handshake{Required: true, KeyAuth: websocket.Source{Query: "apikey"}, CloseOnFailure: true},
	})
	html := strings.ReplaceAll(strings.ReplaceAll(refusalPage, "WSURL", e.wsURL()), "KEY", apiKey)
	res := browser.Run(t, browser.Page(t, html), 30*time.Second)
	var got map[string]struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal(res.Value, &got), "console: %q", res.Console)
	require.Equal(t, websocket.CloseUnauthorized, got["none"].Code)
	require.Equal(t, "credentials required", got["none"].Reason)
	require.Equal(t, websocket.CloseUnauthorized, got["wrong"].Code)
	require.Equal(t, "invalid credentials", got["wrong"].Reason)
	// Accepted, then closed by the NATS side for never sending CONNECT:
	// nats-server's close for an authentication timeout (1008).
	require.Equal(t, websocket.ClosePolicyViolation, got["good"].Code)
	require.Equal(t, "Authentication Timeout", got["good"].Reason)
}
