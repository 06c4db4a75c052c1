package websocket_test

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/transport"
	"github.com/busbar/busbar/websocket"
)

// TestWSSWithNatsGo: websocket { tls {} } serves wss:// to nats.go.
func TestWSSWithNatsGo(t *testing.T) {
	certs := testcert.Write(t)
	e := start(t, broker.Options{}, websocket.Options{TLS: &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey}})
	nc := connect(t, "wss://"+e.ws.Addr().String(), nats.Secure(&tls.Config{RootCAs: certs.Pool, MinVersion: tls.VersionTLS12}))
	sub, err := nc.SubscribeSync("secure")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("secure", []byte("over tls")))
	m, err := sub.NextMsg(3 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "over tls", string(m.Data))
	// A plain ws:// client on the TLS port does not get an upgrade.
	_, err = nats.Connect("ws://"+e.ws.Addr().String(), nats.MaxReconnects(0), nats.Timeout(time.Second))
	require.Error(t, err)
}

// TestHeadersAdvertisePing: headers {} on the 101, advertise in INFO
// ws_connect_urls, and ping frames every ping_interval.
func TestHeadersAdvertisePing(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{
		Headers:      map[string]string{"X-Frame-Options": "DENY", "Server": "busbar"},
		Advertise:    "ws.example.com:443",
		PingInterval: 100 * time.Millisecond,
	})
	r := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	require.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
	require.Equal(t, "busbar", r.header.Get("Server"))
	_, p := readFrame(t, r.br)
	var info struct {
		WSConnectURLs []string `json:"ws_connect_urls"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(string(p), "INFO "))), &info))
	require.Equal(t, []string{"ws://ws.example.com:443"}, info.WSConnectURLs)
	pings := 0
	deadline := time.Now().Add(3 * time.Second)
	for pings < 2 && time.Now().Before(deadline) {
		op, _ := readFrame(t, r.br)
		if op == 0x9 {
			pings++
		}
	}
	require.Equal(t, 2, pings, "ping frames every ping_interval")
}

// TestJWTAuthAtHandshake: an external JWT (HS256) from the Authorization
// header, a query parameter or a cookie authenticates the upgrade; a
// forged one is a 401 whose body does not echo it.
func TestJWTAuthAtHandshake(t *testing.T) {
	const secret = "hmac-secret-for-tests"
	a, err := auth.New(auth.Options{
		Users:       []auth.User{{Name: "ann", Perms: &auth.Permissions{Publish: &auth.SubjectPermission{Allow: []string{"ann.>"}}}}},
		ExternalJWT: &auth.ExternalJWT{Keys: []auth.JWTKey{{Alg: "HS256", Secret: secret}}, Issuer: "idp"},
	})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a}, websocket.Options{
		Handshake: websocket.Handshake{Required: true, JWTAuth: websocket.Source{Header: "Authorization", Query: "jwt", Cookie: "jwt"}},
	})
	sign := func(key string) string {
		s, err := gjwt.NewWithClaims(gjwt.SigningMethodHS256, gjwt.MapClaims{
			"sub": "ann", "iss": "idp", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(key))
		require.NoError(t, err)
		return s
	}
	good, forged := sign(secret), sign("other-secret")
	addr := e.ws.Addr().String()
	for name, req := range map[string]string{
		"header": upgradeRequest("/", "Authorization: Bearer "+good),
		"query":  upgradeRequest("/?jwt=" + good),
		"cookie": upgradeRequest("/", "Cookie: jwt="+good),
	} {
		t.Run(name, func(t *testing.T) {
			r := send(t, addr, req)
			require.Equal(t, 101, r.status)
			// CONNECT without credentials acts as ann: ann.> allowed, x denied.
			_, _ = r.conn.Write(frame(0x2, true, []byte("CONNECT {}\r\nPUB x 1\r\na\r\nPING\r\n")))
			var got strings.Builder
			for !strings.Contains(got.String(), "PONG") {
				_, p := readFrame(t, r.br)
				got.Write(p)
			}
			require.Contains(t, got.String(), `Permissions Violation for Publish to "x"`)
		})
	}
	r := send(t, addr, upgradeRequest("/", "Authorization: Bearer "+forged))
	require.Equal(t, 401, r.status)
	require.NotContains(t, r.body, forged[:20])
}

// TestMaxPayloadOverWebSocket: a PUB over max_payload gets nats-server's
// -ERR and close 1009; a frame over the message limit is refused
// before it is read.
func TestMaxPayloadOverWebSocket(t *testing.T) {
	e := start(t, broker.Options{MaxPayload: 1024}, websocket.Options{})
	r := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	readFrame(t, r.br)
	_, _ = r.conn.Write(frame(0x2, true, []byte("CONNECT {}\r\nPUB a 4096\r\n")))
	code, reason, data := readUntilClose(t, r.br)
	require.Contains(t, data, "-ERR 'Maximum Payload Violation'")
	require.Equal(t, websocket.CloseMessageTooBig, code)
	require.Equal(t, "Maximum Payload Violation", reason)

	r = send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	readFrame(t, r.br)
	// The header announces 1 MiB; the limit (2×max_payload + control
	// line + 64 KiB) refuses it at once.
	_, _ = r.conn.Write([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4})
	code, _, _ = readUntilClose(t, r.br)
	require.Equal(t, websocket.CloseMessageTooBig, code)
}

// TestSlowConsumerOverWebSocket: a WebSocket subscriber that stops
// reading is cut off at max_pending, not allowed to grow the queue.
func TestSlowConsumerOverWebSocket(t *testing.T) {
	e := start(t, broker.Options{MaxPending: 256 << 10, MaxPayload: 64 << 10, WriteDeadline: 500 * time.Millisecond}, websocket.Options{})
	r := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	_, _ = r.conn.Write(frame(0x2, true, []byte("CONNECT {}\r\nSUB big 1\r\nPING\r\n")))
	pub := connect(t, e.natsURL())
	payload := make([]byte, 32<<10)
	require.Eventually(t, func() bool {
		for range 64 {
			_ = pub.Publish("big", payload)
		}
		_ = pub.Flush()
		return e.b.Stats().SlowConsumers > 0
	}, 10*time.Second, 10*time.Millisecond, "the subscriber that does not read is a slow consumer")
}

// TestWSSVerifyAndMap: over wss:// with a client certificate, tls {
// verify_and_map } names the user, as over TCP.
func TestWSSVerifyAndMap(t *testing.T) {
	certs := testcert.Write(t)
	a, err := auth.New(auth.Options{TLSMap: true, Users: []auth.User{{Name: "alice@example.com",
		Perms: &auth.Permissions{Publish: &auth.SubjectPermission{Allow: []string{"alice.>"}}}}}})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a}, websocket.Options{TLS: &transport.TLSOptions{
		CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CA, Verify: true,
	}})
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	require.NoError(t, err)
	errs := make(chan error, 4)
	nc := connect(t, "wss://"+e.ws.Addr().String(), nats.Secure(&tls.Config{RootCAs: certs.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	require.NoError(t, nc.Publish("alice.ok", nil))
	require.NoError(t, nc.Publish("bob.no", nil))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "bob.no"`, "the mapped user's permissions apply")
	case <-time.After(3 * time.Second):
		t.Fatal("the certificate did not map to the restricted user")
	}
}
