package websocket_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/transport"
	"github.com/busbar/busbar/websocket"
)

// seen is what a host Authenticator was shown in one call.
type seen struct {
	conn          auth.ConnType
	authorization string // Header "Authorization"
	trace         string // Header "X-Trace"
	sid           string // cookie "sid"
	tenant        string // query "tenant"
	user          string // a CONNECT credential
	remote        bool
	tls           bool
}

// hostAuth is a host application's own Authenticator: a session bearer
// token in the upgrade request's Authorization header, a session cookie,
// or (at CONNECT) a user and password. It records every call.
type hostAuth struct {
	mu    sync.Mutex
	calls []seen
}

func (h *hostAuth) Authenticate(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	s := seen{conn: c.Conn, user: c.User, remote: c.RemoteAddr != nil, tls: c.TLS != nil}
	if c.Header != nil {
		s.authorization, s.trace = c.Header.Get("Authorization"), c.Header.Get("X-Trace")
	}
	for _, ck := range c.Cookies {
		if ck.Name == "sid" {
			s.sid = ck.Value
		}
	}
	s.tenant = c.Query.Get("tenant")
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
	switch {
	case s.authorization == "Bearer good-session":
		return ownPrefix("ann"), true, nil
	case strings.HasPrefix(s.authorization, "Bearer "):
		return nil, false, fmt.Errorf("%w: unknown session", auth.ErrNotAuthorized) // refused outright: 401
	case s.sid == "good-cookie":
		return ownPrefix("bob"), true, nil
	case c.User == "carol" && c.Password == "pw":
		return ownPrefix("carol"), true, nil
	}
	return nil, false, nil // not mine: credentials may still come in CONNECT
}

// ownPrefix may publish and subscribe under its own name only.
func ownPrefix(name string) *auth.Identity {
	return &auth.Identity{Name: name, Perms: &auth.Permissions{
		Publish:   &auth.SubjectPermission{Allow: []string{name + ".>"}},
		Subscribe: &auth.SubjectPermission{Allow: []string{name + ".>", "_INBOX.>"}},
	}}
}

func (h *hostAuth) reset() {
	h.mu.Lock()
	h.calls = nil
	h.mu.Unlock()
}

func (h *hostAuth) all() []seen {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]seen(nil), h.calls...)
}

// TestHostAuthenticatorSeesUpgradeRequest (issue 18): the broker's
// Authenticator is shown every WebSocket upgrade request (headers,
// cookies, query, remote address) at the handshake, where a refusal is a
// 401 before any upgrade, and again with the CONNECT credentials; over
// the listener and over the handler mounted on the host's mux, for NATS
// (nats.go) and MQTT (paho).
func TestHostAuthenticatorSeesUpgradeRequest(t *testing.T) {
	for _, path := range []string{"listener", "handler"} {
		t.Run(path, func(t *testing.T) {
			h := &hostAuth{}
			e := start(t, broker.Options{Authenticator: h}, websocket.Options{})
			base, addr := "ws://"+e.ws.Addr().String(), e.ws.Addr().String()
			if path == "handler" {
				mux := http.NewServeMux()
				ws := e.ws.Handler(e.b)
				mux.Handle("/ws", ws)
				mux.Handle("/ws/mqtt", ws)
				srv := httptest.NewServer(mux)
				t.Cleanup(srv.Close)
				addr = strings.TrimPrefix(srv.URL, "http://")
				base = "ws://" + addr + "/ws"
			}
			hostAuthCases(t, h, base, addr, path == "handler")
		})
	}
}

func hostAuthCases(t *testing.T, h *hostAuth, base, addr string, mounted bool) {
	reqPath := "/"
	if mounted {
		reqPath = "/ws"
	}
	t.Run("nats.go accepted by a header at the handshake", func(t *testing.T) {
		h.reset()
		nc := connect(t, base, nats.WebSocketConnectionHeaders(http.Header{"Authorization": {"Bearer good-session"}}))
		errs := make(chan error, 1)
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
		sub, err := nc.SubscribeSync("ann.orders")
		require.NoError(t, err)
		require.NoError(t, nc.Publish("ann.orders", []byte("1")))
		_, err = sub.NextMsg(3 * time.Second)
		require.NoError(t, err, "ann's own subject")
		require.NoError(t, nc.Publish("bob.orders", []byte("2")))
		select {
		case err := <-errs:
			require.ErrorContains(t, err, `Permissions Violation for Publish to "bob.orders"`)
		case <-time.After(3 * time.Second):
			t.Fatal("ann's permissions were not applied")
		}
		calls := h.all()
		require.Len(t, calls, 1, "asked once, at the handshake: CONNECT added no credential")
		require.Equal(t, auth.ConnWebSocket, calls[0].conn)
		require.True(t, calls[0].remote)
	})
	t.Run("a refusal is a 401 before the upgrade", func(t *testing.T) {
		_, err := nats.Connect(base, nats.MaxReconnects(0), nats.Timeout(3*time.Second),
			nats.WebSocketConnectionHeaders(http.Header{"Authorization": {"Bearer stolen"}}))
		require.Error(t, err)
		r := send(t, addr, upgradeRequest(reqPath, "Authorization: Bearer stolen"))
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.NotEmpty(t, r.header.Get("WWW-Authenticate"))
		require.NotContains(t, r.body, "stolen")
	})
	t.Run("cookies, query and remote address", func(t *testing.T) {
		h.reset()
		r := send(t, addr, upgradeRequest(reqPath+"?tenant=acme", "Cookie: theme=dark; sid=good-cookie"))
		require.Equal(t, http.StatusSwitchingProtocols, r.status)
		calls := h.all()
		require.NotEmpty(t, calls)
		require.Equal(t, seen{conn: auth.ConnWebSocket, sid: "good-cookie", tenant: "acme", remote: true}, calls[0])
	})
	t.Run("nothing at the handshake: CONNECT decides, with the request", func(t *testing.T) {
		h.reset()
		connect(t, base, nats.UserInfo("carol", "pw"), nats.WebSocketConnectionHeaders(http.Header{"X-Trace": {"t-1"}}))
		calls := h.all()
		require.Len(t, calls, 2, "the handshake, then CONNECT")
		require.Equal(t, seen{conn: auth.ConnWebSocket, trace: "t-1", remote: true}, calls[0])
		require.Equal(t, seen{conn: auth.ConnWebSocket, trace: "t-1", user: "carol", remote: true}, calls[1])
		_, err := nats.Connect(base, nats.MaxReconnects(0), nats.Timeout(3*time.Second))
		require.ErrorContains(t, err, "Authorization Violation", "no credential anywhere")
	})
	t.Run("paho MQTT over WebSocket, by header and at CONNECT", func(t *testing.T) { pahoCases(t, h, base) })
}

// pahoCases: MQTT over WebSocket with paho, accepted by a header at the
// handshake, by CONNECT credentials with the request seen again, and
// refused at the handshake.
func pahoCases(t *testing.T, h *hostAuth, base string) {
	h.reset()
	hdr := http.Header{"Authorization": {"Bearer good-session"}}
	c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(base + "/mqtt").SetClientID("ann-1").SetHTTPHeaders(hdr).SetConnectTimeout(3 * time.Second))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	c.Disconnect(50)
	require.Equal(t, auth.ConnMQTTWS, h.all()[0].conn)

	h.reset()
	c = mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(base + "/mqtt").SetClientID("carol-1").
		SetUsername("carol").SetPassword("pw").SetHTTPHeaders(http.Header{"X-Trace": {"t-2"}}).SetConnectTimeout(3 * time.Second))
	tok = c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	c.Disconnect(50)
	calls := h.all()
	require.Len(t, calls, 2, "the handshake, then CONNECT")
	require.Equal(t, seen{conn: auth.ConnMQTTWS, trace: "t-2", user: "carol", remote: true}, calls[1])

	c = mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(base + "/mqtt").SetClientID("x-1").
		SetHTTPHeaders(http.Header{"Authorization": {"Bearer stolen"}}).SetConnectTimeout(3 * time.Second))
	tok = c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.Error(t, tok.Error(), "refused at the handshake")
}

// TestHostAuthenticatorCloseMode: with on_failure "close", the host
// Authenticator's refusal is the close code 4401 a browser can read.
func TestHostAuthenticatorCloseMode(t *testing.T) {
	e := start(t, broker.Options{Authenticator: &hostAuth{}}, websocket.Options{Handshake: websocket.Handshake{CloseOnFailure: true}})
	r := send(t, e.ws.Addr().String(), upgradeRequest("/", "Authorization: Bearer stolen"))
	require.Equal(t, http.StatusSwitchingProtocols, r.status)
	code, reason, _ := readUntilClose(t, r.br)
	require.Equal(t, websocket.CloseUnauthorized, code)
	require.Equal(t, "invalid credentials", reason)
}

// TestHostAuthenticatorSeesTLS: over wss:// the handshake's Credentials
// carry the connection's TLS state.
func TestHostAuthenticatorSeesTLS(t *testing.T) {
	certs := testcert.Write(t)
	h := &hostAuth{}
	e := start(t, broker.Options{Authenticator: h}, websocket.Options{TLS: &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey}})
	connect(t, "wss://"+e.ws.Addr().String(), nats.Secure(&tls.Config{RootCAs: certs.Pool, MinVersion: tls.VersionTLS12}),
		nats.WebSocketConnectionHeaders(http.Header{"Authorization": {"Bearer good-session"}}))
	calls := h.all()
	require.Len(t, calls, 1)
	require.True(t, calls[0].tls)
}
