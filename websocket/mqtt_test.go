package websocket_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// v5ws connects paho.golang's autopaho (MQTT 5.0) over ws:// and returns
// the channel of what it receives.
func v5ws(t *testing.T, rawURL, clientID string, cp func(*autopaho.ClientConfig)) (*autopaho.ConnectionManager, chan *paho.Publish) {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	msgs := make(chan *paho.Publish, 100)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, ConnectTimeout: 3 * time.Second,
		CleanStartOnInitialConnection: true,
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			}},
		},
	}
	if cp != nil {
		cp(&cfg)
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cm.Disconnect(dctx)
		dcancel()
		cancel()
	})
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	require.NoError(t, cm.AwaitConnection(actx))
	return cm, msgs
}

func recv5(t *testing.T, msgs chan *paho.Publish) *paho.Publish {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

// TestMQTTOverWebSocket: paho.golang (5.0, path /mqtt) and
// paho.mqtt.golang (3.1.1, subprotocol mqtt on /) over WebSocket exchange
// QoS 1 messages with each other and with NATS over TCP.
func TestMQTTOverWebSocket(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{})
	ctx := context.Background()
	cm, msgs5 := v5ws(t, e.wsURL()+"/mqtt", "v5-ws", nil)
	_, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/+", QoS: 1}}})
	require.NoError(t, err)

	o := mqtt3.NewClientOptions().AddBroker(e.wsURL() + "/").SetClientID("v3-ws").SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
	v3 := mqtt3.NewClient(o)
	tok := v3.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { v3.Disconnect(100) })
	got3 := make(chan mqtt3.Message, 10)
	tok = v3.Subscribe("replies/#", 1, func(_ mqtt3.Client, m mqtt3.Message) { got3 <- m })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	tcp := connect(t, e.natsURL())
	natsSub, err := tcp.SubscribeSync("sensors.*")
	require.NoError(t, err)
	require.NoError(t, tcp.Flush())

	// 3.1.1 over ws → 5.0 over ws and NATS over TCP.
	tok = v3.Publish("sensors/t1", 1, false, "21.5")
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	m := recv5(t, msgs5)
	require.Equal(t, "sensors/t1", m.Topic)
	require.Equal(t, "21.5", string(m.Payload))
	require.Equal(t, byte(1), m.QoS)
	nm, err := natsSub.NextMsg(3 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "sensors.t1", nm.Subject)

	// NATS over TCP and 5.0 over ws → 3.1.1 over ws.
	require.NoError(t, tcp.Publish("replies.a", []byte("from-nats")))
	_, err = cm.Publish(ctx, &paho.Publish{Topic: "replies/b", QoS: 1, Payload: []byte("from-v5")})
	require.NoError(t, err)
	seen := map[string]string{}
	for len(seen) < 2 {
		select {
		case m := <-got3:
			seen[m.Topic()] = string(m.Payload())
		case <-time.After(5 * time.Second):
			t.Fatalf("3.1.1 client got only %v", seen)
		}
	}
	require.Equal(t, map[string]string{"replies/a": "from-nats", "replies/b": "from-v5"}, seen)
}

// TestMQTTOverWebSocketAuth: MQTT_WS in allowed_connection_types, and
// the identity from the handshake used when CONNECT has no credentials.
func TestMQTTOverWebSocketAuth(t *testing.T) {
	a, err := auth.New(auth.Options{Users: []auth.User{
		{Name: "dev", Password: password, ConnTypes: auth.ConnTypes(0).Add(auth.ConnMQTTWS)},
		{Name: "tcp", Password: password, ConnTypes: auth.ConnTypes(0).Add(auth.ConnMQTT)},
		{Name: "svc", APIKey: apiKey},
	}})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a}, websocket.Options{
		Handshake: websocket.Handshake{KeyAuth: websocket.Source{Query: "apikey"}},
	})
	withUser := func(user string) func(*autopaho.ClientConfig) {
		return func(c *autopaho.ClientConfig) {
			c.ConnectUsername, c.ConnectPassword = user, []byte(password)
		}
	}
	v5ws(t, e.wsURL()+"/mqtt", "dev-1", withUser("dev"))
	v5ws(t, e.wsURL()+"/mqtt?apikey="+apiKey, "svc-1", nil)

	// A user allowed only over MQTT (TCP) is refused over WebSocket:
	// CONNACK 0x87 (not authorized).
	u, _ := url.Parse(e.wsURL() + "/mqtt")
	refused := make(chan byte, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, ConnectTimeout: 3 * time.Second,
		ConnectUsername: "tcp", ConnectPassword: []byte(password),
		OnConnectError: func(err error) {
			t.Logf("connect error: %v", err)
			var ce *autopaho.ConnackError
			if errorsAs(err, &ce) {
				select {
				case refused <- ce.ReasonCode:
				default:
				}
			}
		},
		ClientConfig: paho.ClientConfig{ClientID: "tcp-1"},
	})
	require.NoError(t, err)
	select {
	case ca := <-refused:
		require.Equal(t, byte(0x87), ca)
	case <-time.After(5 * time.Second):
		t.Fatal("a MQTT-only user was not refused over WebSocket")
	}
	cancel()
	<-cm.Done()
}

// TestHandlerOnHostMux: the transport as an http.Handler under a host
// application's own path, NATS and MQTT, with the host's other routes
// untouched.
func TestHandlerOnHostMux(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{})
	mux := http.NewServeMux()
	mux.Handle("/app/ws/", e.ws.Handler(e.b))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("fine")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base := "ws" + strings.TrimPrefix(srv.URL, "http")

	nc := connect(t, base+"/app/ws/nats")
	sub, err := nc.SubscribeSync("hello.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	cm, _ := v5ws(t, base+"/app/ws/mqtt", "mux-mqtt", nil)
	_, err = cm.Publish(context.Background(), &paho.Publish{Topic: "hello/mux", QoS: 1, Payload: []byte("via mux")})
	require.NoError(t, err)
	m, err := sub.NextMsg(3 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "hello.mux", m.Subject)
	require.Equal(t, "via mux", string(m.Data))

	resp, err := http.Get(srv.URL + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	// Plain GET and POST on the handler path: 400 and 405, one line.
	resp, err = http.Get(srv.URL + "/app/ws/nats")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, err = http.Post(srv.URL+"/app/ws/nats", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
