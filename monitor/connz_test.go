package monitor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// startWith is start with broker options of the test's own (no
// authentication) and, when ln is set, the NATS listener accepting on it.
func startWith(t *testing.T, bo broker.Options, ln net.Listener) *env {
	t.Helper()
	b, err := broker.New(bo)
	require.NoError(t, err)
	e := &env{b: b}
	e.nats, err = natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	e.mqtt, err = mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	e.ws, err = websocket.New(websocket.Options{Host: "127.0.0.1", NATS: e.nats, MQTT: e.mqtt})
	require.NoError(t, err)
	e.mon = monitor.New(b, monitor.Options{})
	if ln != nil {
		e.nats.UseListener(ln)
	} else {
		require.NoError(t, e.nats.Listen())
	}
	for _, l := range []interface{ Listen() error }{e.mqtt, e.ws, e.mon} {
		require.NoError(t, l.Listen())
	}
	require.NoError(t, b.Start(e.nats, e.mqtt, e.ws, e.mon))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

// dialV5 connects a paho.golang (MQTT 5.0) client that counts what it
// receives.
func dialV5(t *testing.T, addr, id string, got chan<- *paho.Publish) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: "carol", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// connByName returns the /connz entry (open connections, with query) whose
// name is name.
func connByName(t *testing.T, e *env, query, name string) map[string]any {
	t.Helper()
	_, list := conns(t, e, query)
	for _, c := range list {
		if c["name"] == name {
			return c
		}
	}
	t.Fatalf("no connection %q in /connz?%s", name, query)
	return nil
}

// TestConnzOutCounters: a nats.go client over TCP, one over WebSocket and
// a paho MQTT 5.0 client each receive N messages; /connz shows exactly N
// messages and N×size bytes out for each, with the transport's own
// figures (start, last_activity, pending_bytes, lang, version). Once they
// disconnect, /varz and /metrics keep their out counts by transport.
func TestConnzOutCounters(t *testing.T) {
	const n, size = 7, 11
	e := start(t, monitor.Options{})
	recv := make(chan struct{}, 3*n)
	count := func(*nats.Msg) { recv <- struct{}{} }
	tcp := natsConnect(t, "nats://"+e.nats.Addr().String(), nats.UserInfo("alice", "pw"), nats.Name("tcp-sub"))
	_, err := tcp.Subscribe("data.>", count)
	require.NoError(t, err)
	require.NoError(t, tcp.Flush())
	ws := natsConnect(t, "ws://"+e.ws.Addr().String(), nats.UserInfo("bob", "pw"), nats.Name("ws-sub"))
	_, err = ws.Subscribe("data.*", count)
	require.NoError(t, err)
	require.NoError(t, ws.Flush())
	got := make(chan *paho.Publish, n)
	v5 := dialV5(t, e.mqtt.Addr().String(), "mqtt5-sub", got)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "data/#", QoS: 0}}})
	require.NoError(t, err)

	pub, err := e.b.Local("pub")
	require.NoError(t, err)
	defer pub.Close(nil)
	payload := []byte(strings.Repeat("x", size))
	for range n {
		require.NoError(t, pub.Publish("data.point", payload))
	}
	for range 2 * n {
		select {
		case <-recv:
		case <-time.After(5 * time.Second):
			t.Fatal("NATS deliveries missing")
		}
	}
	for range n {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("MQTT deliveries missing")
		}
	}

	for _, tc := range []struct{ name, lang, transport string }{
		{"tcp-sub", "go", "nats"}, {"ws-sub", "go", "websocket"}, {"mqtt5-sub", "", "mqtt"},
	} {
		c := connByName(t, e, "", tc.name)
		require.Equal(t, float64(n), c["out_msgs"], tc.name)
		require.Equal(t, float64(n*size), c["out_bytes"], tc.name)
		require.Equal(t, tc.transport, c["transport"], tc.name)
		require.Contains(t, c, "pending_bytes", tc.name)
		require.GreaterOrEqual(t, c["pending_bytes"].(float64), 0.0, tc.name)
		for _, k := range []string{"start", "last_activity", "uptime", "idle"} {
			require.Contains(t, c, k, tc.name)
		}
		start, err := time.Parse(time.RFC3339Nano, c["start"].(string))
		require.NoError(t, err)
		last, err := time.Parse(time.RFC3339Nano, c["last_activity"].(string))
		require.NoError(t, err)
		require.False(t, last.Before(start), "%s: last_activity %v before start %v", tc.name, last, start)
		if tc.lang != "" {
			require.Equal(t, tc.lang, c["lang"], tc.name)
			require.Equal(t, nats.Version, c["version"], tc.name)
		}
	}
	_, sorted := conns(t, e, "sort=bytes_to")
	require.Equal(t, float64(n*size), sorted[0]["out_bytes"])

	// Gone, the connections keep their counts in the totals.
	tcp.Close()
	ws.Close()
	require.NoError(t, v5.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return e.b.NumConnections() == 1 }, 5*time.Second, 10*time.Millisecond)
	v := getJSON(t, e.url("/varz"))
	tr := v["transports"].(map[string]any)
	for _, l := range []string{"nats", "websocket", "mqtt"} {
		require.Equal(t, float64(n), tr[l].(map[string]any)["out_msgs"], l)
		require.Equal(t, float64(n*size), tr[l].(map[string]any)["out_bytes"], l)
	}
	require.Equal(t, float64(3*n*size), v["out_bytes"])
	fams := metrics(t, e.url("/metrics"))
	for _, l := range []string{"nats", "websocket", "mqtt"} {
		got, ok := value(fams[monitor.MetricOutBytes], "transport", l)
		require.True(t, ok, l)
		require.Equal(t, float64(n*size), got, l)
		closed, ok := value(fams[monitor.MetricClosedConns], "transport", l, "reason", broker.ReasonClientClosed)
		require.True(t, ok, l)
		require.Equal(t, 1.0, closed, l)
	}

	// And /connz?state=closed shows them with their counts and why.
	cz, list := conns(t, e, "state=closed")
	require.Equal(t, 3.0, cz["total"])
	for _, c := range list {
		require.Equal(t, broker.ReasonClientClosed, c["reason"], c["name"])
		require.Equal(t, float64(n), c["out_msgs"], c["name"])
		require.Equal(t, float64(n*size), c["out_bytes"], c["name"])
		require.Contains(t, c, "stop")
	}
}

// rawSub connects a NATS client over TCP that subscribes to subj and then
// never reads.
func rawSub(t *testing.T, addr, name, subj string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	r := bufio.NewReader(nc)
	_, err = r.ReadString('\n') // INFO
	require.NoError(t, err)
	_, err = fmt.Fprintf(nc, "CONNECT {\"verbose\":false,\"name\":%q,\"lang\":\"raw\",\"version\":\"1.2.3\"}\r\nSUB %s 1\r\nPING\r\n", name, subj)
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "PONG\r\n", line)
	return nc
}

// TestConnzClosedStates: closed connections appear in state=closed with
// stop and nats-server's reason (client closed, slow consumer cut), in
// state=any beside the open ones; paging, sorting by stop and reason,
// and the 400 for those sorts on open connections.
func TestConnzClosedStates(t *testing.T) {
	e := startWith(t, broker.Options{MaxPending: 256 << 10, MaxPayload: 64 << 10}, nil)
	addr := e.nats.Addr().String()
	open := natsConnect(t, "nats://"+addr, nats.Name("stays"))
	require.NoError(t, open.Flush())
	quitter := natsConnect(t, "nats://"+addr, nats.Name("quitter"))
	require.NoError(t, quitter.Flush())
	quitter.Close()
	require.Eventually(t, func() bool { // the server saw it go before the next one is cut
		cz, _ := conns(t, e, "state=closed")
		return cz["total"] == 1.0
	}, 10*time.Second, 5*time.Millisecond)

	// A subscriber that never reads is cut once over max_pending.
	rawSub(t, addr, "sleeper", "flood")
	c := connByName(t, e, "", "sleeper")
	require.Equal(t, "raw", c["lang"])
	require.Equal(t, "1.2.3", c["version"])
	pub, err := e.b.Local("flooder")
	require.NoError(t, err)
	defer pub.Close(nil)
	chunk := make([]byte, 60<<10)
	require.Eventually(t, func() bool {
		for range 64 {
			_ = pub.Publish("flood", chunk)
		}
		cz, _ := conns(t, e, "state=closed")
		return cz["total"] == 2.0
	}, 10*time.Second, 5*time.Millisecond)

	cz, list := conns(t, e, "state=closed&sort=reason")
	require.Equal(t, 2.0, cz["total"])
	require.Equal(t, []any{"quitter", "sleeper"}, []any{list[0]["name"], list[1]["name"]})
	require.Equal(t, broker.ReasonClientClosed, list[0]["reason"])
	require.Equal(t, broker.ReasonSlowConsumerPending, list[1]["reason"])
	require.Greater(t, list[1]["out_msgs"].(float64), 0.0)
	require.Equal(t, "raw", list[1]["lang"])
	for _, c := range list {
		stop, err := time.Parse(time.RFC3339Nano, c["stop"].(string))
		require.NoError(t, err)
		start, err := time.Parse(time.RFC3339Nano, c["start"].(string))
		require.NoError(t, err)
		require.False(t, stop.Before(start))
	}
	_, byStop := conns(t, e, "state=closed&sort=stop")
	require.Equal(t, "sleeper", byStop[0]["name"], "the latest stop first")
	_, subs := conns(t, e, "state=closed&subs=1&cid="+jsonNum(list[1]["cid"]))
	require.Equal(t, []any{"flood"}, subs[0]["subscriptions_list"])

	cz, all := conns(t, e, "state=any")
	require.Equal(t, 4.0, cz["total"], "stays, flooder, quitter, sleeper")
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1]["cid"].(float64), all[i]["cid"].(float64), "by cid")
	}
	cz, page := conns(t, e, "state=all&offset=1&limit=2")
	require.Equal(t, 4.0, cz["total"])
	require.Equal(t, []any{all[1]["cid"], all[2]["cid"]}, []any{page[0]["cid"], page[1]["cid"]})
	cz, _ = conns(t, e, "")
	require.Equal(t, 2.0, cz["total"], "open: stays and flooder")

	for _, q := range []string{"sort=stop", "sort=reason&state=any"} {
		code, body := get(t, e.url("/connz?"+q))
		require.Equal(t, http.StatusBadRequest, code, q)
		require.Contains(t, body, "only valid on closed connections")
	}
	fams := metrics(t, e.url("/metrics"))
	v, ok := value(fams[monitor.MetricClosedConns], "transport", "nats", "reason", broker.ReasonSlowConsumerPending)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}

// TestConnzClosedBounded: with MaxClosedClients 3, closing five
// connections keeps the three newest.
func TestConnzClosedBounded(t *testing.T) {
	e := startWith(t, broker.Options{MaxClosedClients: 3}, nil)
	var cids []uint64
	for i := range 5 {
		nc := natsConnect(t, "nats://"+e.nats.Addr().String(), nats.Name(fmt.Sprintf("c%d", i)))
		require.NoError(t, nc.Flush())
		cid, err := nc.GetClientID()
		require.NoError(t, err)
		cids = append(cids, cid)
		nc.Close()
		require.Eventually(t, func() bool { return e.b.NumConnections() == 0 }, 5*time.Second, 5*time.Millisecond)
	}
	cz, list := conns(t, e, "state=closed")
	require.Equal(t, 3.0, cz["total"])
	var got []uint64
	for _, c := range list {
		got = append(got, uint64(c["cid"].(float64)))
	}
	require.Equal(t, cids[2:], got)
	fams := metrics(t, e.url("/metrics"))
	v, ok := value(fams[monitor.MetricClosedConns], "transport", "nats", "reason", broker.ReasonClientClosed)
	require.True(t, ok)
	require.Equal(t, 5.0, v, "the counter is not bounded by the history")
}

// TestHealthzListenerDies: /healthz is 200 while every listener accepts,
// 503 naming the NATS listener once its socket is closed underneath (the
// accept loop ends on a permanent error), and 503 when a transport is
// closed outside Shutdown.
func TestHealthzListenerDies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := startWith(t, broker.Options{}, ln)
	nc := natsConnect(t, "nats://"+ln.Addr().String())
	require.NoError(t, nc.Flush(), "the transport serves the listener it was given")
	code, body := get(t, e.url("/healthz"))
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"status":"ok"}`, body)

	require.NoError(t, ln.Close())
	require.Eventually(t, func() bool {
		code, _ := get(t, e.url("/healthz"))
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 10*time.Millisecond)
	h := getHealth(t, e)
	require.Equal(t, "unavailable", h["status"])
	require.Equal(t, 503.0, h["status_code"])
	require.Contains(t, h["error"], "nats: "+ln.Addr().String()+": transport: accept loop stopped")
	require.Equal(t, nil, nc.Flush(), "open connections are unaffected")

	require.NoError(t, e.mqtt.Close())
	h = getHealth(t, e)
	require.Contains(t, h["error"], "mqtt: "+e.mqtt.Addr().String()+": transport: listener closed")
	require.NotContains(t, h["error"], "websocket", "the WebSocket listener still accepts")
}

func getHealth(t *testing.T, e *env) map[string]any {
	t.Helper()
	code, body := get(t, e.url("/healthz"))
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m))
	return m
}

// TestConnzRTT: once the server's PING is answered, /connz shows its
// round trip; a client that never saw one shows none.
func TestConnzRTT(t *testing.T) {
	e := startWith(t, broker.Options{PingInterval: 20 * time.Millisecond, PingMax: 1000}, nil)
	nc := natsConnect(t, "nats://"+e.nats.Addr().String(), nats.Name("pinged"))
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool {
		_, ok := connByName(t, e, "", "pinged")["rtt"]
		return ok
	}, 5*time.Second, 10*time.Millisecond)
	rtt, err := time.ParseDuration(connByName(t, e, "", "pinged")["rtt"].(string))
	require.NoError(t, err)
	require.Greater(t, rtt, time.Duration(0))
}
