package monitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// env is a broker with NATS, MQTT and WebSocket listeners on free ports,
// its monitoring listener, and the same Server mounted under /mon/ on a
// host mux.
type env struct {
	b    *broker.Broker
	nats *natsproto.Transport
	mqtt *mqtt.Transport
	ws   *websocket.Transport
	mon  *monitor.Server
	host *httptest.Server // a host app's mux with the Server under /mon/
}

// testAuth accepts any user with password "pw"; "tcponly" may only use
// plain NATS connections.
var testAuth = auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	if c.Password != "pw" {
		return nil, false, nil
	}
	id := &auth.Identity{Name: c.User}
	if c.User == "tcponly" {
		id.ConnTypes = id.ConnTypes.Add(auth.ConnStandard)
	}
	return id, true, nil
})

func start(t *testing.T, o monitor.Options) *env {
	t.Helper()
	b, err := broker.New(broker.Options{ServerName: "mon-test", Authenticator: testAuth})
	require.NoError(t, err)
	e := &env{b: b}
	e.nats, err = natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	e.mqtt, err = mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	e.ws, err = websocket.New(websocket.Options{Host: "127.0.0.1", NATS: e.nats, MQTT: e.mqtt})
	require.NoError(t, err)
	if o.MQTT == nil {
		o.MQTT = func() monitor.MQTTStats {
			st := mqtt.SessionStats(b)
			return monitor.MQTTStats{Sessions: st.Sessions, Connected: st.Connected, Inflight: st.Inflight, Queued: st.Queued, Dropped: st.Dropped, Retained: st.Retained}
		}
	}
	e.mon = monitor.New(b, o)
	for _, l := range []interface{ Listen() error }{e.nats, e.mqtt, e.ws, e.mon} {
		require.NoError(t, l.Listen())
	}
	require.NoError(t, b.Start(e.nats, e.mqtt, e.ws, e.mon))
	mux := http.NewServeMux()
	mux.Handle("/mon/", http.StripPrefix("/mon", e.mon))
	e.host = httptest.NewServer(mux)
	t.Cleanup(func() {
		e.host.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

func (e *env) url(path string) string { return "http://" + e.mon.Addr().String() + path }

// get fetches path from the monitoring listener and returns the status
// and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// getJSON fetches path and decodes its JSON object.
func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	code, body := get(t, url)
	require.Equal(t, http.StatusOK, code, body)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	return m
}

// metrics fetches /metrics and parses it with Prometheus's own parser.
func metrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, monitor.ContentType, resp.Header.Get("Content-Type"))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value is the sample of fam whose labels include every name=value pair
// of want; ok is false when there is none.
func value(fam *dto.MetricFamily, want ...string) (v float64, ok bool) {
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// clients are connections on every transport, with subscriptions and
// message counts the test knows exactly.
type clients struct {
	tcp, ws, inproc *nats.Conn
	mqttTCP, mqttWS mqtt3.Client
	local           *broker.Local
	received        atomic.Int64 // deliveries seen by all subscribers
}

func natsConnect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(3 * time.Second), nats.MaxReconnects(0)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func mqttConnect(t *testing.T, url, id, user string) mqtt3.Client {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword("pw").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func wait(t *testing.T, tok mqtt3.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
}

// connectAll makes one connection per transport (two over WebSocket:
// NATS and MQTT; two in-process: nats.go and broker.Local), subscribes,
// publishes 3 NATS + 1 MQTT + 2 in-process messages and waits for their 16
// deliveries.
func connectAll(t *testing.T, e *env) *clients {
	t.Helper()
	c := &clients{}
	count := func(*nats.Msg) { c.received.Add(1) }
	c.tcp = natsConnect(t, "nats://"+e.nats.Addr().String(), nats.UserInfo("alice", "pw"), nats.Name("tcp-client"))
	_, err := c.tcp.Subscribe("orders.*", count)
	require.NoError(t, err)
	_, err = c.tcp.QueueSubscribe("work", "workers", count)
	require.NoError(t, err)
	require.NoError(t, c.tcp.Flush())

	c.ws = natsConnect(t, "ws://"+e.ws.Addr().String(), nats.UserInfo("bob", "pw"))
	_, err = c.ws.Subscribe("orders.>", count)
	require.NoError(t, err)
	require.NoError(t, c.ws.Flush())

	c.inproc = natsConnect(t, "", nats.InProcessServer(natsproto.InProcess(e.b)), nats.UserInfo("erin", "pw"))
	_, err = c.inproc.Subscribe("orders.new", count)
	require.NoError(t, err)
	require.NoError(t, c.inproc.Flush())

	countMQTT := func(mqtt3.Client, mqtt3.Message) { c.received.Add(1) }
	c.mqttTCP = mqttConnect(t, "tcp://"+e.mqtt.Addr().String(), "mqtt-tcp", "carol")
	wait(t, c.mqttTCP.Subscribe("orders/+", 1, countMQTT))
	c.mqttWS = mqttConnect(t, "ws://"+e.ws.Addr().String()+"/mqtt", "mqtt-ws", "dave")
	wait(t, c.mqttWS.Subscribe("sensors/#", 0, countMQTT))

	c.local, err = e.b.Local("local")
	require.NoError(t, err)
	t.Cleanup(func() { c.local.Close(nil) })
	_, err = c.local.Subscribe("sensors.>", func(*broker.Message) { c.received.Add(1) })
	require.NoError(t, err)

	for range 3 {
		require.NoError(t, c.tcp.Publish("orders.new", []byte("hello"))) // tcp, ws, inproc, mqtt-tcp
	}
	require.NoError(t, c.tcp.Flush())
	wait(t, c.mqttTCP.Publish("sensors/t1", 1, true, "21.5")) // mqtt-ws, local; retained
	for range 2 {
		require.NoError(t, c.local.Publish("work", []byte("job"))) // tcp (queue)
	}
	require.Eventually(t, func() bool { return c.received.Load() == 16 }, 5*time.Second, 10*time.Millisecond,
		"deliveries: %d", c.received.Load())
	return c
}

// TestEndpointsEveryTransport: /varz, /connz, /subsz, /healthz and
// /metrics against a broker with connections on every transport: field
// names and counts checked, /metrics read with Prometheus's parser.
func TestEndpointsEveryTransport(t *testing.T) {
	e := start(t, monitor.Options{})
	c := connectAll(t, e)
	// Two refused logins: a wrong password over TCP, and a TCP-only user
	// over WebSocket.
	_, err := nats.Connect("nats://"+e.nats.Addr().String(), nats.UserInfo("alice", "wrong"), nats.MaxReconnects(0))
	require.Error(t, err)
	_, err = nats.Connect("ws://"+e.ws.Addr().String(), nats.UserInfo("tcponly", "pw"), nats.MaxReconnects(0))
	require.Error(t, err)

	t.Run("varz", func(t *testing.T) { checkVarz(t, e) })
	t.Run("connz", func(t *testing.T) { checkConnz(t, e) })
	t.Run("subsz", func(t *testing.T) { checkSubsz(t, e) })
	t.Run("metrics", func(t *testing.T) { checkMetrics(t, e) })
	t.Run("healthz", func(t *testing.T) {
		code, body := get(t, e.url("/healthz"))
		require.Equal(t, http.StatusOK, code)
		require.JSONEq(t, `{"status":"ok"}`, body)
	})

	// A connection gone keeps its counts in the totals.
	c.tcp.Close()
	require.Eventually(t, func() bool { return e.b.NumConnections() == 5 }, 5*time.Second, 10*time.Millisecond)
	fams := metrics(t, e.url("/metrics"))
	for _, tc := range []struct {
		name string
		want float64
	}{{monitor.MetricConnections, 0}, {monitor.MetricInMessages, 3}, {monitor.MetricInBytes, 15}, {monitor.MetricOutMessages, 5}} {
		v, ok := value(fams[tc.name], "transport", "nats")
		require.True(t, ok, tc.name)
		require.Equal(t, tc.want, v, tc.name)
	}
}

// checkVarz: nats-server's field names, the listeners' addresses and the
// counts of connectAll.
func checkVarz(t *testing.T, e *env) {
	require.Eventually(t, func() bool { return getJSON(t, e.url("/varz"))["connections"] == 6.0 }, 5*time.Second, 10*time.Millisecond)
	v := getJSON(t, e.url("/varz"))
	for _, k := range []string{"server_id", "server_name", "version", "proto", "go", "host", "port", "max_connections",
		"ping_interval", "ping_max", "http_host", "http_port", "auth_timeout", "max_control_line", "max_payload", "max_pending",
		"mqtt", "websocket", "write_deadline", "start", "now", "uptime", "mem", "cores", "gomaxprocs", "connections",
		"total_connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "slow_consumers", "subscriptions",
		"http_req_stats", "transports", "mqtt_stats"} {
		require.Contains(t, v, k)
	}
	require.Equal(t, e.b.ID(), v["server_id"])
	require.Equal(t, "mon-test", v["server_name"])
	require.Equal(t, true, v["auth_required"])
	require.Equal(t, float64(port(e.nats.Addr().String())), v["port"])
	require.Equal(t, float64(port(e.mon.Addr().String())), v["http_port"])
	require.Equal(t, float64(port(e.mqtt.Addr().String())), v["mqtt"].(map[string]any)["port"])
	require.Equal(t, float64(port(e.ws.Addr().String())), v["websocket"].(map[string]any)["port"])
	require.Equal(t, float64(broker.DefaultMaxPayload), v["max_payload"])
	require.Equal(t, float64(2*time.Minute), v["ping_interval"])
	require.Equal(t, 6.0, v["in_msgs"])
	require.Equal(t, 25.0, v["in_bytes"])
	require.Equal(t, 16.0, v["out_msgs"])
	require.Equal(t, 8.0, v["subscriptions"]) // MQTT sensors/# is two: sensors.> and sensors
	require.Equal(t, 0.0, v["slow_consumers"])
	require.GreaterOrEqual(t, v["total_connections"].(float64), 6.0)
	require.Greater(t, v["mem"].(float64), 0.0)
	require.GreaterOrEqual(t, v["http_req_stats"].(map[string]any)["/varz"].(float64), 1.0)
	tr := v["transports"].(map[string]any)
	for name, want := range map[string][3]float64{ // connections, in_msgs, out_msgs
		"nats": {1, 3, 5}, "websocket": {2, 0, 4}, "mqtt": {1, 1, 3}, "inprocess": {2, 2, 4},
	} {
		got := tr[name].(map[string]any)
		require.Equal(t, want, [3]float64{got["connections"].(float64), got["in_msgs"].(float64), got["out_msgs"].(float64)}, name)
	}
	ms := v["mqtt_stats"].(map[string]any)
	require.Equal(t, 2.0, ms["sessions"])
	require.Equal(t, 2.0, ms["connected"])
	require.Equal(t, 1.0, ms["retained"])
}

func port(hostport string) int {
	_, p, _ := strings.Cut(hostport, ":")
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

// conns fetches /connz?query and returns the document and its
// connections.
func conns(t *testing.T, e *env, query string) (map[string]any, []map[string]any) {
	t.Helper()
	cz := getJSON(t, e.url("/connz?"+query))
	var out []map[string]any
	for _, c := range cz["connections"].([]any) {
		out = append(out, c.(map[string]any))
	}
	return cz, out
}

// checkConnz: every transport's connection with its counts, the
// subscription lists, paging, sorting and filters.
func checkConnz(t *testing.T, e *env) {
	cz, list := conns(t, e, "")
	require.Equal(t, 6.0, cz["num_connections"])
	require.Equal(t, 6.0, cz["total"])
	require.Equal(t, 0.0, cz["offset"])
	require.Equal(t, float64(monitor.DefaultListSize), cz["limit"])
	require.Equal(t, e.b.ID(), cz["server_id"])
	byKey := map[string]map[string]any{}
	for _, c := range list {
		for _, k := range []string{"cid", "kind", "type", "transport", "connection_type", "ip", "port", "pending_bytes",
			"in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions"} {
			require.Contains(t, c, k)
		}
		require.NotContains(t, c, "authorized_user", "only with auth=1")
		key, _ := c["name"].(string)
		if key == "" {
			key = c["transport"].(string)
		}
		byKey[key] = c
	}
	type want struct {
		transport, typ, connType string
		in, inBytes, out, subs   float64
		hasIP                    bool
	}
	for key, w := range map[string]want{
		"tcp-client": {"nats", "nats", "STANDARD", 3, 15, 5, 2, true},
		"websocket":  {"websocket", "websocket", "WEBSOCKET", 0, 0, 3, 1, true},
		"inprocess":  {"inprocess", "nats", "IN_PROCESS", 0, 0, 3, 1, false},
		"mqtt-tcp":   {"mqtt", "mqtt", "MQTT", 1, 4, 3, 1, true},
		"mqtt-ws":    {"websocket", "mqtt", "MQTT_WS", 0, 0, 1, 2, true}, // sensors/#: sensors.> and sensors
		"local":      {"inprocess", "nats", "IN_PROCESS", 2, 6, 1, 1, false},
	} {
		c := byKey[key]
		require.NotNil(t, c, "connection %s in %v", key, byKey)
		require.Equal(t, w, want{c["transport"].(string), c["type"].(string), c["connection_type"].(string),
			c["in_msgs"].(float64), c["in_bytes"].(float64), c["out_msgs"].(float64), c["subscriptions"].(float64),
			c["ip"] == "127.0.0.1" && c["port"].(float64) > 0}, key)
		require.Equal(t, "Client", c["kind"])
	}
	require.Equal(t, "mqtt-tcp", byKey["mqtt-tcp"]["mqtt_client"])
	checkConnzQueries(t, e)
}

// checkConnzQueries: subscription lists, paging, sorting, filters and
// nats-server's 400s.
func checkConnzQueries(t *testing.T, e *env) {
	_, list := conns(t, e, "subs=1&transport=nats")
	require.Len(t, list, 1)
	require.Equal(t, []any{"orders.*", "work"}, list[0]["subscriptions_list"])
	_, list = conns(t, e, "subs=1&mqtt_client=mqtt-tcp")
	require.Equal(t, []any{"orders.*"}, list[0]["subscriptions_list"], "an MQTT connection shows its session's subscriptions")
	_, list = conns(t, e, "subs=detail&transport=nats")
	detail := list[0]["subscriptions_list_detail"].([]any)
	require.Len(t, detail, 2)
	work := detail[1].(map[string]any)
	require.Equal(t, "work", work["subject"])
	require.Equal(t, "workers", work["qgroup"])
	require.Equal(t, 2.0, work["msgs"])
	require.Equal(t, list[0]["cid"], work["cid"])

	_, all := conns(t, e, "")
	cz, page := conns(t, e, "offset=1&limit=2")
	require.Equal(t, 2.0, cz["num_connections"])
	require.Equal(t, 6.0, cz["total"])
	require.Equal(t, []any{all[1]["cid"], all[2]["cid"]}, []any{page[0]["cid"], page[1]["cid"]})
	for _, sort := range []string{"msgs_from", "in_msgs"} {
		_, sorted := conns(t, e, "sort="+sort)
		require.Equal(t, "tcp-client", sorted[0]["name"], sort)
	}
	_, sorted := conns(t, e, "sort=msgs_to")
	require.Equal(t, 5.0, sorted[0]["out_msgs"])
	_, list = conns(t, e, "auth=1&transport=nats")
	require.Equal(t, "alice", list[0]["authorized_user"])
	cz, _ = conns(t, e, "transport=websocket")
	require.Equal(t, 2.0, cz["total"])
	cz, _ = conns(t, e, "cid="+jsonNum(all[3]["cid"]))
	require.Equal(t, 1.0, cz["total"])
	cz, closed := conns(t, e, "state=closed")
	require.Equal(t, 2.0, cz["total"], "the two refused logins")
	for _, c := range closed {
		require.Equal(t, broker.ReasonAuthViolation, c["reason"])
		require.Contains(t, c, "stop")
	}

	for _, q := range []string{"sort=bogus", "limit=x", "subs=maybe", "user=alice", "state=sideways"} {
		code, body := get(t, e.url("/connz?"+q))
		require.Equal(t, http.StatusBadRequest, code, q)
		require.NotEmpty(t, body)
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// checkSubsz: the router's figures and the subscription list with its
// test filter and paging.
func checkSubsz(t *testing.T, e *env) {
	sz := getJSON(t, e.url("/subsz"))
	for _, k := range []string{"server_id", "now", "num_subscriptions", "num_cache", "max_fanout", "avg_fanout", "total", "offset", "limit"} {
		require.Contains(t, sz, k)
	}
	require.Equal(t, 8.0, sz["num_subscriptions"])
	require.Greater(t, sz["num_cache"].(float64), 0.0, "published subjects are cached")
	require.Equal(t, 4.0, sz["max_fanout"], "orders.new reaches four subscriptions")
	require.NotContains(t, sz, "subscriptions_list")

	sz = getJSON(t, e.url("/subsz?subs=1"))
	require.Equal(t, 8.0, sz["total"])
	require.Len(t, sz["subscriptions_list"], 8)

	_, mqttConn := conns(t, e, "mqtt_client=mqtt-tcp")
	sz = getJSON(t, e.url("/subsz?subs=1&test=orders.new"))
	require.Equal(t, 4.0, sz["total"])
	var subjects []string
	for _, s := range sz["subscriptions_list"].([]any) {
		d := s.(map[string]any)
		for _, k := range []string{"subject", "msgs", "cid", "account"} {
			require.Contains(t, d, k)
		}
		subjects = append(subjects, d["subject"].(string))
		if d["subject"] == "orders.*" && d["cid"] == mqttConn[0]["cid"] {
			require.Equal(t, 3.0, d["msgs"])
		}
	}
	require.ElementsMatch(t, []string{"orders.*", "orders.*", "orders.>", "orders.new"}, subjects)

	sz = getJSON(t, e.url("/subsz?subs=1&limit=2&offset=7"))
	require.Equal(t, 8.0, sz["total"])
	require.Len(t, sz["subscriptions_list"], 1)
	code, _ := get(t, e.url("/subsz?subs=1&test=orders.*"))
	require.Equal(t, http.StatusBadRequest, code, "test needs a literal subject")
}

// checkMetrics reads /metrics with Prometheus's text parser: every family
// with its type, connections and messages by transport, auth failures by
// reason, the MQTT figures.
func checkMetrics(t *testing.T, e *env) {
	fams := metrics(t, e.url("/metrics"))
	types := map[string]dto.MetricType{
		monitor.MetricInfo: dto.MetricType_GAUGE, monitor.MetricStartTime: dto.MetricType_GAUGE,
		monitor.MetricConnections: dto.MetricType_GAUGE, monitor.MetricSubscriptions: dto.MetricType_GAUGE,
		monitor.MetricInMessages: dto.MetricType_COUNTER, monitor.MetricInBytes: dto.MetricType_COUNTER,
		monitor.MetricOutMessages: dto.MetricType_COUNTER, monitor.MetricOutBytes: dto.MetricType_COUNTER,
		monitor.MetricSlowConsumers: dto.MetricType_COUNTER, monitor.MetricAuthFailures: dto.MetricType_COUNTER,
		monitor.MetricMQTTSessions: dto.MetricType_GAUGE, monitor.MetricMQTTConnected: dto.MetricType_GAUGE,
		monitor.MetricMQTTInflight: dto.MetricType_GAUGE, monitor.MetricMQTTQueued: dto.MetricType_GAUGE,
		monitor.MetricMQTTDropped: dto.MetricType_COUNTER, monitor.MetricRetained: dto.MetricType_GAUGE,
	}
	for name, typ := range types {
		require.Contains(t, fams, name)
		require.Equal(t, typ, fams[name].GetType(), name)
		require.NotEmpty(t, fams[name].GetHelp(), name)
	}
	require.NotContains(t, fams, monitor.MetricStoreSize, "no store source")

	for _, tc := range []struct {
		name      string
		transport string
		want      float64
	}{
		{monitor.MetricConnections, "nats", 1}, {monitor.MetricConnections, "websocket", 2},
		{monitor.MetricConnections, "mqtt", 1}, {monitor.MetricConnections, "inprocess", 2},
		{monitor.MetricInMessages, "nats", 3}, {monitor.MetricInMessages, "mqtt", 1},
		{monitor.MetricInMessages, "inprocess", 2}, {monitor.MetricInMessages, "websocket", 0},
		{monitor.MetricInBytes, "nats", 15}, {monitor.MetricInBytes, "mqtt", 4}, {monitor.MetricInBytes, "inprocess", 6},
		{monitor.MetricOutMessages, "nats", 5}, {monitor.MetricOutMessages, "websocket", 4},
		{monitor.MetricOutMessages, "mqtt", 3}, {monitor.MetricOutMessages, "inprocess", 4},
		{monitor.MetricOutBytes, "nats", 21}, {monitor.MetricOutBytes, "websocket", 19},
		{monitor.MetricOutBytes, "mqtt", 15}, {monitor.MetricOutBytes, "inprocess", 15}, // broker.Local counts no bytes
	} {
		v, ok := value(fams[tc.name], "transport", tc.transport)
		require.True(t, ok, "%s{transport=%q}", tc.name, tc.transport)
		require.Equal(t, tc.want, v, "%s{transport=%q}", tc.name, tc.transport)
	}
	for _, tc := range []struct{ transport, reason string }{{"nats", "invalid_credentials"}, {"websocket", "connection_type"}} {
		v, ok := value(fams[monitor.MetricAuthFailures], "transport", tc.transport, "reason", tc.reason)
		require.True(t, ok, "auth failure %v", tc)
		require.Equal(t, 1.0, v, "auth failure %v", tc)
	}
	for name, want := range map[string]float64{
		monitor.MetricSubscriptions: 8, monitor.MetricSlowConsumers: 0, monitor.MetricMQTTSessions: 2,
		monitor.MetricMQTTConnected: 2, monitor.MetricRetained: 1, monitor.MetricMQTTDropped: 0,
	} {
		v, ok := value(fams[name])
		require.True(t, ok, name)
		require.Equal(t, want, v, name)
	}
	v, ok := value(fams[monitor.MetricInfo], "server_name", "mon-test", "server_id", e.b.ID(), "version", broker.Version)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}

// TestHealthz: 200 while every listener is bound and every check passes;
// 503 with the reasons otherwise, and once the broker shuts down (asked
// through a host app's mux, the listener being gone).
func TestHealthz(t *testing.T) {
	var storeErr atomic.Pointer[error]
	e := start(t, monitor.Options{Checks: []monitor.Check{{Name: "store", Check: func() error {
		if p := storeErr.Load(); p != nil {
			return *p
		}
		return nil
	}}}})
	code, body := get(t, e.host.URL+"/mon/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)

	err := errors.New("not loaded")
	storeErr.Store(&err)
	code, body = get(t, e.url("/healthz"))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.JSONEq(t, `{"status":"unavailable","status_code":503,"error":"store: not loaded","errors":["store: not loaded"]}`, body)
	storeErr.Store(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.b.Shutdown(ctx))
	code, body = get(t, e.host.URL+"/mon/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "broker: shutting down")
}

// TestMountedOnHostMux: the Server answers under a host app's prefix; it
// refuses other methods and unknown paths.
func TestMountedOnHostMux(t *testing.T) {
	e := start(t, monitor.Options{})
	for _, path := range []string{"/mon/", "/mon/varz", "/mon/connz", "/mon/subsz", "/mon/healthz", "/mon/metrics"} {
		code, body := get(t, e.host.URL+path)
		require.Equal(t, http.StatusOK, code, path)
		require.NotEmpty(t, body, path)
	}
	code, _ := get(t, e.host.URL+"/mon/nope")
	require.Equal(t, http.StatusNotFound, code)
	resp, err := http.Post(e.host.URL+"/mon/varz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	v := getJSON(t, e.host.URL+"/mon/varz")
	require.Equal(t, 0.0, v["connections"])
}

// TestMetricsEscaping: label values with quotes, backslashes and
// newlines survive Prometheus's parser.
func TestMetricsEscaping(t *testing.T) {
	name := "a \"quoted\" \\ name\nline two"
	b, err := broker.New(broker.Options{ServerName: name})
	require.NoError(t, err)
	mon := monitor.New(b, monitor.Options{Store: func() monitor.StoreStats {
		return monitor.StoreStats{Bytes: 1 << 40, Records: 9, Commits: 3, LastSync: 1500 * time.Microsecond}
	}})
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(mon.WriteMetrics(nil))))
	require.NoError(t, err)
	v, ok := value(fams[monitor.MetricInfo], "server_name", name)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
	for metric, want := range map[string]float64{
		monitor.MetricStoreSize: 1 << 40, monitor.MetricStoreRecords: 9, monitor.MetricStoreFsyncs: 3,
		monitor.MetricStoreLastFsync: 0.0015, monitor.MetricStoreCompactions: 0,
	} {
		v, ok := value(fams[metric])
		require.True(t, ok, metric)
		require.Equal(t, want, v, metric)
	}
	require.NotContains(t, fams, monitor.MetricMQTTSessions, "no MQTT source")
}

// TestListenAddressInUse: the listener reports a busy address before
// anything runs.
func TestListenAddressInUse(t *testing.T) {
	e := start(t, monitor.Options{})
	p := port(e.mon.Addr().String())
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	mon := monitor.New(b, monitor.Options{Port: p})
	err = mon.Listen()
	require.ErrorContains(t, err, "monitor: listen 127.0.0.1:")
	require.ErrorContains(t, err, "address already in use")
	require.NoError(t, mon.Close())
	require.NoError(t, mon.Serve(context.Background(), b), "after Close")
}
