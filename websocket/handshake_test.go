package websocket_test

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// Secrets the tests use; no response body may contain one.
const (
	apiKey   = "k-7f3a9c-secret"
	password = "s3cret-pw"
	token    = "tok-42-secret"
)

func handshakeAuth(t *testing.T) auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Options{Token: token, Users: []auth.User{
		{Name: "svc", APIKey: apiKey, Perms: &auth.Permissions{
			Publish: &auth.SubjectPermission{Allow: []string{"svc.>"}}, Subscribe: &auth.SubjectPermission{Allow: []string{"svc.>", "_INBOX.>"}},
		}},
		{Name: "alice", Password: password},
		{Name: "one", Password: password, MaxConns: 1},
		{Name: "tcponly", Password: password, ConnTypes: auth.ConnTypes(0).Add(auth.ConnStandard)},
	}})
	require.NoError(t, err)
	return a
}

func basic(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestHandshakeStatuses: every refusal before the upgrade, with its
// status, one-line body and headers; no body echoes a credential.
func TestHandshakeStatuses(t *testing.T) {
	e := start(t, broker.Options{Authenticator: handshakeAuth(t)}, websocket.Options{
		AllowedOrigins:    []string{"https://app.example.com"},
		MaxHandshakeBytes: 2048,
		Handshake: websocket.Handshake{
			Required: true, BasicAuth: true, SubprotocolAuth: true,
			KeyAuth: websocket.Source{Header: "apikey", Query: "apikey"},
		},
	})
	addr := e.ws.Addr().String()
	cases := []struct {
		name      string
		req       string
		status    int
		body      string
		challenge bool
	}{
		{"no credential", upgradeRequest("/"), 401, "busbar: credentials required\n", true},
		{"wrong api key header", upgradeRequest("/", "apikey: wrong-"+apiKey), 401, "busbar: invalid credentials\n", true},
		{"wrong api key query", upgradeRequest("/?apikey=nope"), 401, "busbar: invalid credentials\n", true},
		{"wrong basic password", upgradeRequest("/", basic("alice", "x"+password)), 401, "busbar: invalid credentials\n", true},
		{"malformed basic", upgradeRequest("/", "Authorization: Basic !!!"), 401, "busbar: malformed basic credentials\n", true},
		{"wrong bearer subprotocol", upgradeRequest("/", "Sec-WebSocket-Protocol: mqtt, bearer."+base64.RawURLEncoding.EncodeToString([]byte("bad"))), 401, "busbar: invalid credentials\n", true},
		{"origin refused", upgradeRequest("/", "apikey: "+apiKey, "Origin: https://evil.example.com"), 403, "busbar: origin not allowed\n", false},
		{"origin port differs", upgradeRequest("/", "apikey: "+apiKey, "Origin: https://app.example.com:8443"), 403, "busbar: origin not allowed\n", false},
		{"connection type refused", upgradeRequest("/", basic("tcponly", password)), 403, "busbar: connection type not allowed for this user\n", false},
		{"not a GET", strings.Replace(upgradeRequest("/"), "GET", "POST", 1), 405, "", false},
		{"not an upgrade", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "", false},
		{"header too large", upgradeRequest("/", "X-Big: "+strings.Repeat("a", 4096)), 431, "busbar: handshake larger than max_handshake_bytes\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, addr, tc.req)
			require.Equal(t, tc.status, r.status)
			if tc.body != "" {
				require.Equal(t, tc.body, r.body)
			}
			require.Equal(t, 1, strings.Count(strings.TrimSuffix(r.body, "\n"), "\n")+1, "one line: %q", r.body)
			for _, s := range []string{apiKey, password, "wrong-", "nope"} {
				require.NotContains(t, r.body, s, "the body echoes a credential")
			}
			if tc.challenge {
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic")
			}
		})
	}

	// Accepted: the identity from the handshake carries into the session.
	for name, h := range map[string]string{
		"api key header": "apikey: " + apiKey,
		"origin allowed": "apikey: " + apiKey + "\r\nOrigin: https://app.example.com",
	} {
		t.Run(name, func(t *testing.T) {
			r := send(t, addr, upgradeRequest("/", h))
			require.Equal(t, 101, r.status)
			require.Empty(t, r.header.Get("Sec-WebSocket-Protocol"))
		})
	}
	t.Run("bearer subprotocol is not echoed", func(t *testing.T) {
		r := send(t, addr, upgradeRequest("/", "Sec-WebSocket-Protocol: mqtt, bearer."+base64.RawURLEncoding.EncodeToString([]byte(token))))
		require.Equal(t, 101, r.status)
		require.Equal(t, "mqtt", r.header.Get("Sec-WebSocket-Protocol"))
	})
}

// TestHandshakeIdentityCarries: a client authenticated at the handshake
// sends CONNECT without credentials and gets that user's permissions.
func TestHandshakeIdentityCarries(t *testing.T) {
	e := start(t, broker.Options{Authenticator: handshakeAuth(t)}, websocket.Options{
		Handshake: websocket.Handshake{KeyAuth: websocket.Source{Query: "apikey"}},
	})
	nc := connect(t, e.wsURL()+"/?apikey="+apiKey)
	errs := make(chan error, 4)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	sub, err := nc.SubscribeSync("svc.echo")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("svc.echo", []byte("ok")))
	m, err := sub.NextMsg(3 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "ok", string(m.Data))

	require.NoError(t, nc.Publish("other", []byte("x")))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "other"`)
	case <-time.After(3 * time.Second):
		t.Fatal("publish outside the api-key user's permissions was not refused")
	}
	// CONNECT credentials still work on their own (no handshake credential).
	connect(t, e.wsURL(), nats.UserInfo("alice", password))
	_, err = nats.Connect(e.wsURL(), nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation")
}

// TestHandshakeCookies: nats-server's user_cookie/pass_cookie and
// token_cookie authenticate at the handshake; a wrong cookie is a 401.
// Cookies turn same_origin on in the config (tested in config); here an
// explicit origin policy is checked against a browser-like Origin.
func TestHandshakeCookies(t *testing.T) {
	e := start(t, broker.Options{Authenticator: handshakeAuth(t)}, websocket.Options{
		UserCookie: "u", PassCookie: "p", TokenCookie: "t", SameOrigin: true,
	})
	addr := e.ws.Addr().String()
	r := send(t, addr, upgradeRequest("/", "Cookie: u=alice; p="+password, "Origin: http://127.0.0.1"))
	require.Equal(t, 101, r.status)
	r = send(t, addr, upgradeRequest("/", "Cookie: t="+token))
	require.Equal(t, 101, r.status)
	r = send(t, addr, upgradeRequest("/", "Cookie: u=alice; p=wrong"))
	require.Equal(t, 401, r.status)
	r = send(t, addr, upgradeRequest("/", "Cookie: t="+token, "Origin: http://other.example.com"))
	require.Equal(t, 403, r.status, "same_origin")
}

// TestHandshakeCloseMode: on_failure "close" upgrades and closes with a
// code and reason a browser can read.
func TestHandshakeCloseMode(t *testing.T) {
	e := start(t, broker.Options{Authenticator: handshakeAuth(t)}, websocket.Options{
		AllowedOrigins: []string{"http://ok.example.com"}, MaxConnections: 1,
		Handshake: websocket.Handshake{Required: true, KeyAuth: websocket.Source{Header: "apikey"}, CloseOnFailure: true},
	})
	addr := e.ws.Addr().String()
	for _, tc := range []struct {
		name   string
		hdr    []string
		code   int
		reason string
	}{
		{"unauthorized", nil, websocket.CloseUnauthorized, "credentials required"},
		{"wrong key", []string{"apikey: bad"}, websocket.CloseUnauthorized, "invalid credentials"},
		{"forbidden origin", []string{"apikey: " + apiKey, "Origin: http://evil.example.com"}, websocket.CloseForbidden, "origin not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, addr, upgradeRequest("/", tc.hdr...))
			require.Equal(t, 101, r.status)
			code, reason, _ := readUntilClose(t, r.br)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.reason, reason)
		})
	}
	t.Run("over the limit", func(t *testing.T) {
		first := send(t, addr, upgradeRequest("/", "apikey: "+apiKey))
		require.Equal(t, 101, first.status)
		r := send(t, addr, upgradeRequest("/", "apikey: "+apiKey))
		require.Equal(t, 101, r.status)
		code, reason, _ := readUntilClose(t, r.br)
		require.Equal(t, websocket.CloseTryAgainLater, code)
		require.Equal(t, "maximum connections exceeded", reason)
	})
}

// TestHandshakeLimits: max_connections, max_connections_per_ip (the
// client's address from X-Forwarded-For only through a trusted proxy),
// and a user's own max_connections, each a 503.
func TestHandshakeLimits(t *testing.T) {
	e := start(t, broker.Options{Authenticator: handshakeAuth(t)}, websocket.Options{
		MaxConnectionsPerIP: 1, MaxConnections: 3,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Handshake:      websocket.Handshake{BasicAuth: true},
	})
	addr := e.ws.Addr().String()
	cred := basic("alice", password)
	a := send(t, addr, upgradeRequest("/", cred, "X-Forwarded-For: 203.0.113.1"))
	require.Equal(t, 101, a.status)
	r := send(t, addr, upgradeRequest("/", cred, "X-Forwarded-For: 203.0.113.1"))
	require.Equal(t, http.StatusServiceUnavailable, r.status, "second from one client IP")
	require.Equal(t, "busbar: maximum connections exceeded\n", r.body)
	b := send(t, addr, upgradeRequest("/", cred, "X-Forwarded-For: 198.51.100.7, 203.0.113.2"))
	require.Equal(t, 101, b.status, "another client behind the proxy")

	one := send(t, addr, upgradeRequest("/", basic("one", password), "X-Forwarded-For: 203.0.113.3"))
	require.Equal(t, 101, one.status)
	_, _ = one.conn.Write(frame(0x2, true, []byte("CONNECT {}\r\nPING\r\n")))
	require.Eventually(t, func() bool {
		r := send(t, addr, upgradeRequest("/", basic("one", password), "X-Forwarded-For: 203.0.113.4"))
		return r.status == http.StatusServiceUnavailable && strings.Contains(r.body, "for this user")
	}, 3*time.Second, 50*time.Millisecond, "the user's own max_connections")

	r = send(t, addr, upgradeRequest("/", cred, "X-Forwarded-For: 203.0.113.9"))
	require.Equal(t, http.StatusServiceUnavailable, r.status, "max_connections in all")

	// Freed slots are given back when connections end.
	a.conn.Close()
	require.Eventually(t, func() bool {
		r := send(t, addr, upgradeRequest("/", cred, "X-Forwarded-For: 203.0.113.1"))
		return r.status == 101
	}, 3*time.Second, 50*time.Millisecond)
}

// TestHandshakeGiantHeader: a 64 MiB header line is cut at
// max_handshake_bytes with a 431; the server does not read it all.
func TestHandshakeGiantHeader(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{})
	c, err := net.Dial("tcp", e.ws.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	written := make(chan int64, 1)
	go func() {
		var n int64
		w, _ := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
		n += int64(w)
		chunk := []byte(strings.Repeat("a", 64<<10))
		for n < 64<<20 {
			w, err := c.Write(chunk)
			n += int64(w)
			if err != nil {
				break
			}
		}
		written <- n
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	n := <-written
	require.Less(t, n, int64(64<<20), "the server read the whole 64 MiB header")
}
