package websocket_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// The WebSocket transport as an http.Handler on the host application's own
// mux, with an API key checked at the handshake, before the upgrade. The
// same Transport can also run its own listener (Listen, then b.Start).
func Example() {
	a, _ := auth.New(auth.Options{Users: []auth.User{{Name: "dashboard", APIKey: "k-7f3a"}}})
	b, err := broker.New(broker.Options{Authenticator: a})
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())
	wt, err := websocket.New(websocket.Options{
		Handshake: websocket.Handshake{Required: true, KeyAuth: websocket.Source{Header: "X-Api-Key"}},
	})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/ws", wt.Handler(b)) // NATS; MQTT when the client asks for subprotocol mqtt
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "the app's page") })
	srv := httptest.NewServer(mux) // 127.0.0.1, a free port
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	nc, err := nats.Connect(wsURL, nats.WebSocketConnectionHeaders(http.Header{"X-Api-Key": {"k-7f3a"}}))
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync("ticks")
	_ = nc.Publish("ticks", []byte("1"))
	m, err := sub.NextMsg(time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Printf("over %s: %s %s\n", nc.ConnectedUrl()[:5], m.Subject, m.Data)

	// No key: refused with 401 before any upgrade.
	req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("without a key:", resp.Status)
	// Output:
	// over ws://: ticks 1
	// without a key: 401 Unauthorized
}
