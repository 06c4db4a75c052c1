package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
)

// The monitoring endpoints on the host application's own mux under
// /monitor/, read back with GET /monitor/varz.
func Example() {
	b, err := broker.New(broker.Options{MaxPayload: 2 << 20})
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())
	l, _ := b.Local("app")
	_, _ = l.Subscribe("orders.>", func(*broker.Message) {})
	_ = l.Publish("orders.new", []byte("#42"))

	mux := http.NewServeMux()
	mux.Handle("/monitor/", http.StripPrefix("/monitor", monitor.New(b, monitor.Options{})))
	srv := httptest.NewServer(mux) // 127.0.0.1, a free port
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/monitor/varz")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var v monitor.Varz
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		panic(err)
	}
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Println("max_payload", v.MaxPayload, "subscriptions", v.Subscriptions, "in_msgs", v.InMsgs)
	fmt.Println("in-process connections", v.Transports["inprocess"].Connections)

	resp, err = http.Get(srv.URL + "/monitor/healthz")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("healthz", resp.StatusCode)
	// Output:
	// application/json
	// max_payload 2097152 subscriptions 1 in_msgs 1
	// in-process connections 1
	// healthz 200
}
