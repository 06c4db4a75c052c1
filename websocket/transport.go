// Package websocket carries the NATS protocol and MQTT over WebSocket, on
// one port: MQTT when the request path ends in /mqtt or the client asks
// for the subprotocol mqtt, NATS otherwise. It is a listener (the
// nats-server `websocket {}` block) and also an http.Handler a host
// application mounts on its own mux under any path.
//
// Upgrades on the listener are zero-copy (gobwas/ws reads the request
// from the raw connection); the origin policy, connection limits and
// handshake authentication are applied before the 101 is written, so a
// refused client gets 401, 403, 431 or 503 and is never upgraded (or,
// with Handshake.CloseOnFailure, a close frame a browser can read).
// After the upgrade, frames are decoded in place into the protocol's own
// read buffer and each outbound batch leaves as one frame (Conn).
//
//	t, _ := websocket.New(websocket.Options{Port: 8080})
//	b.Start(t) // or on the host's mux: mux.Handle("/ws", t.Handler(b)), and "/ws/mqtt" (Handler)
package websocket

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
)

// Transport is the WebSocket listener and handler.
type Transport struct {
	transport.Listener
	opts   Options
	tlsCfg *tls.Config
	header ws.HandshakeHeaderHTTP // extra 101 headers (websocket { headers })
	urls   []string               // ws_connect_urls

	limits       limits
	authFailures atomic.Int64
}

var (
	_ transport.Transport  = (*Transport)(nil)
	_ broker.HealthChecker = (*Transport)(nil) // transport.Listener's accept-loop liveness, for /healthz
)

// New builds the WebSocket transport. TLS files are loaded here.
func New(o Options) (*Transport, error) {
	o.setDefaults()
	t := &Transport{opts: o}
	var err error
	if t.tlsCfg, err = t.Setup("websocket", o.Host, o.Port, o.TLS); err != nil {
		return nil, err
	}
	if len(o.Headers) > 0 {
		t.header = ws.HandshakeHeaderHTTP(http.Header{})
		for k, v := range o.Headers {
			http.Header(t.header).Set(k, v)
		}
	}
	if o.Advertise != "" {
		scheme := "ws://"
		if o.TLS != nil {
			scheme = "wss://"
		}
		t.urls = []string{scheme + o.Advertise}
	}
	if t.opts.NATS == nil {
		nt, err := natsproto.New(natsproto.Options{Host: o.Host})
		if err != nil {
			return nil, err
		}
		t.opts.NATS = nt
	}
	if t.opts.MQTT == nil {
		mt, err := mqtt.New(mqtt.Options{Host: o.Host})
		if err != nil {
			return nil, err
		}
		t.opts.MQTT = mt
	}
	return t, nil
}

// Name is "websocket".
func (t *Transport) Name() string { return "websocket" }

// AuthFailures counts upgrades refused for bad credentials.
func (t *Transport) AuthFailures() int64 { return t.authFailures.Load() }

// Serve accepts connections until Close.
func (t *Transport) Serve(ctx context.Context, b *broker.Broker) error {
	t.Log = b.Logger()
	return t.Accept(ctx, b.Go, func(nc net.Conn) { t.serveRaw(ctx, b, nc) })
}

// errTooLarge ends a handshake over MaxHandshakeBytes.
var errTooLarge = errors.New("websocket: handshake larger than max_handshake_bytes")

// limitedConn counts what the upgrade reads.
type limitedConn struct {
	net.Conn
	left int
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= n
	return n, err
}

// serveRaw upgrades a connection accepted by the listener and serves it.
func (t *Transport) serveRaw(ctx context.Context, b *broker.Broker, nc net.Conn) {
	o := &t.opts
	deadline := time.Now().Add(o.HandshakeTimeout)
	_ = nc.SetDeadline(deadline)
	if t.tlsCfg != nil {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		tc, err := transport.ServerHandshake(hctx, nc, t.tlsCfg, o.HandshakeTimeout)
		cancel()
		if err != nil {
			b.Logger().Debug("websocket: tls handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
			_ = nc.Close()
			return
		}
		nc = tc
	}
	r := &request{remote: nc.RemoteAddr(), tls: t.tlsCfg != nil, tlsState: transport.TLSState(nc)}
	var (
		acc  *admitted
		rej  *rejection
		flat *wsflate.Extension
	)
	u := t.upgrader(r)
	if o.Compression {
		flat = &wsflate.Extension{Parameters: wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}}
		u.Negotiate = flat.Negotiate
	}
	u.OnBeforeUpgrade = func() (ws.HandshakeHeader, error) {
		acc, rej = t.admit(ctx, b, r)
		if rej != nil && !o.Handshake.CloseOnFailure {
			return nil, rejectError(rej)
		}
		return t.responseHeader(), nil
	}
	lc := &limitedConn{Conn: nc, left: o.MaxHandshakeBytes}
	if _, err := u.Upgrade(lc); err != nil {
		if errors.Is(err, errTooLarge) {
			_, _ = io.WriteString(nc, statusResponse(http.StatusRequestHeaderFieldsTooLarge, "handshake larger than max_handshake_bytes", ""))
		}
		if acc != nil {
			t.release(acc)
		}
		b.Logger().Debug("websocket: upgrade refused", "remote", nc.RemoteAddr().String(), "err", err)
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	deflate := false
	if flat != nil {
		_, deflate = flat.Accepted()
	}
	t.run(ctx, b, newConn(nc, t.maxMessage(b, r.mqtt()), deflate), acc, rej)
}

// upgrader collects what the checks need from the request as gobwas/ws
// parses it (the callbacks' arguments are only valid during the call).
func (t *Transport) upgrader(r *request) ws.Upgrader {
	h := &t.opts.Handshake
	if r.header == nil {
		r.header = http.Header{}
	}
	return ws.Upgrader{
		ReadBufferSize: 1024,
		OnRequest: func(uri []byte) error {
			path, query, _ := cutByte(string(uri), '?')
			r.path, r.rawQuery = path, query
			return nil
		},
		OnHost: func(host []byte) error { r.host = string(host); return nil },
		OnHeader: func(key, value []byte) error {
			k := string(key)
			r.header.Add(k, string(value)) // bounded by max_handshake_bytes
			switch {
			case equalFold(k, "Origin"):
				r.origin = string(value)
			case equalFold(k, "Cookie"):
				r.cookies = append(r.cookies, string(value))
			case equalFold(k, "X-Forwarded-For"):
				r.forwardedFor = append(r.forwardedFor, string(value))
			}
			if h.KeyAuth.Header != "" && equalFold(k, h.KeyAuth.Header) {
				r.keyHeader = string(value)
			}
			if h.JWTAuth.Header != "" && equalFold(k, h.JWTAuth.Header) {
				r.jwtHeader = string(value)
			}
			if equalFold(k, "Authorization") {
				r.authorization = string(value)
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			ok := httphead.ScanTokens(v, func(tok []byte) bool {
				r.protocols = append(r.protocols, string(tok))
				return true
			})
			return r.protocol(), ok
		},
	}
}

// responseHeader is the extra headers of the 101.
func (t *Transport) responseHeader() ws.HandshakeHeader {
	if t.header == nil {
		return ws.HandshakeHeaderString("")
	}
	return t.header
}

// rejectError turns a rejection into the response gobwas/ws writes.
func rejectError(rej *rejection) error {
	opts := []ws.RejectOption{ws.RejectionStatus(rej.status), ws.RejectionReason("busbar: " + rej.reason + "\n")}
	h := http.Header{"Connection": {"close"}}
	if rej.challenge != "" {
		h.Set("WWW-Authenticate", rej.challenge)
	}
	opts = append(opts, ws.RejectionHeader(ws.HandshakeHeaderHTTP(h)))
	return ws.RejectConnectionError(opts...)
}

// statusResponse is a complete HTTP error response with a one-line body.
func statusResponse(status int, reason, challenge string) string {
	body := "busbar: " + reason + "\n"
	s := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
	if challenge != "" {
		s += "WWW-Authenticate: " + challenge + "\r\n"
	}
	return s + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// maxMessage is the largest WebSocket message accepted: room for the
// largest protocol message (max_payload for NATS, with its control line;
// a whole MQTT packet) plus a client's coalesced small ones.
func (t *Transport) maxMessage(b *broker.Broker, isMQTT bool) int {
	o := b.Options()
	n := 2*o.MaxPayload + o.MaxControlLine + 64<<10
	if isMQTT {
		if mt, ok := t.opts.MQTT.(*mqtt.Transport); ok && mt.MaxPacketSize() < n {
			n = mt.MaxPacketSize() + 64<<10
		}
	}
	return n
}

// run serves an upgraded connection until it ends.
func (t *Transport) run(ctx context.Context, b *broker.Broker, c *Conn, acc *admitted, rej *rejection) {
	if rej != nil { // on_failure: close
		c.SetCloseStatus(rej.code, rej.reason)
		_ = c.Close()
		return
	}
	var stop func() bool
	if d := t.opts.PingInterval; d > 0 {
		var tm *time.Timer
		tm = time.AfterFunc(d, func() {
			if c.Ping() == nil {
				tm.Reset(d)
			}
		})
		stop = tm.Stop
	}
	co := transport.ConnOptions{
		WebSocket: true, TLS: t.tlsCfg != nil, Identity: acc.id, Credentials: acc.cr,
		AuthTimeout: t.opts.AuthTimeout, ConnectURLs: t.urls,
		// The protocol's read loop moves to a fresh goroutine once the
		// connection is set up; this runs when it ends. The protocol
		// closes c once its writer has flushed (a last CONNACK or -ERR).
		OnEnd: func() {
			if stop != nil {
				stop()
			}
			t.release(acc)
		},
	}
	srv := t.opts.NATS
	if acc.mqtt {
		srv = t.opts.MQTT
	}
	if err := srv.ServeConn(ctx, b, c, co); err != nil {
		b.Logger().Debug("websocket: connection set-up ended", "remote", c.RemoteAddr().String(), "err", err)
	}
}

func (t *Transport) release(a *admitted) {
	if a != nil && a.limit {
		t.limits.release(a.ip)
		a.limit = false
	}
}

// Handler returns the transport as an http.Handler serving broker b, for
// a host application's own mux under any path (path ending in /mqtt:
// MQTT; else the subprotocol decides). Mount it on both paths a client
// may use, since a mux pattern without a trailing slash is exact:
//
//	h := wt.Handler(b)
//	mux.Handle("/ws", h)      // NATS (nats.ws, nats.go ws://); MQTT with the subprotocol mqtt
//	mux.Handle("/ws/mqtt", h) // MQTT by path, as nats-server serves it
//
// The host's http.Server owns the read timeouts and header size limit
// there.
func (t *Transport) Handler(b *broker.Broker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { t.serveHTTP(b, w, req) })
}

func (t *Transport) serveHTTP(b *broker.Broker, w http.ResponseWriter, hr *http.Request) {
	o := &t.opts
	fail := func(status int, reason, challenge string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if challenge != "" {
			w.Header().Set("WWW-Authenticate", challenge)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "busbar: "+reason+"\n")
	}
	switch {
	case hr.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		fail(http.StatusMethodNotAllowed, "a WebSocket upgrade must be a GET", "")
		return
	case !headerHasToken(hr.Header, "Connection", "upgrade") || !headerHasToken(hr.Header, "Upgrade", "websocket"):
		fail(http.StatusBadRequest, "not a WebSocket upgrade request", "")
		return
	}
	r := &request{
		path: hr.URL.Path, rawQuery: hr.URL.RawQuery, host: hr.Host,
		origin: hr.Header.Get("Origin"), authorization: hr.Header.Get("Authorization"),
		forwardedFor: hr.Header.Values("X-Forwarded-For"), cookies: hr.Header.Values("Cookie"),
		tls: hr.TLS != nil, tlsState: hr.TLS, header: hr.Header,
	}
	if o.Handshake.KeyAuth.Header != "" {
		r.keyHeader = hr.Header.Get(o.Handshake.KeyAuth.Header)
	}
	if o.Handshake.JWTAuth.Header != "" {
		r.jwtHeader = hr.Header.Get(o.Handshake.JWTAuth.Header)
	}
	for _, v := range hr.Header.Values("Sec-WebSocket-Protocol") {
		httphead.ScanTokens([]byte(v), func(tok []byte) bool {
			r.protocols = append(r.protocols, string(tok))
			return true
		})
	}
	if ap, err := netip.ParseAddrPort(hr.RemoteAddr); err == nil {
		r.remote = net.TCPAddrFromAddrPort(ap)
	}
	ctx := hr.Context()
	acc, rej := t.admit(ctx, b, r)
	if rej != nil && !o.Handshake.CloseOnFailure {
		fail(rej.status, rej.reason, rej.challenge)
		return
	}
	u := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == r.protocol() && p != "" }}
	if t.header != nil {
		u.Header = http.Header(t.header)
	}
	var flat *wsflate.Extension
	if o.Compression {
		flat = &wsflate.Extension{Parameters: wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}}
		u.Negotiate = flat.Negotiate
	}
	nc, rw, _, err := u.Upgrade(hr, w)
	if err != nil {
		t.release(acc)
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	if rw != nil && rw.Reader.Buffered() > 0 {
		nc = &bufferedConn{Conn: nc, r: rw.Reader}
	}
	deflate := false
	if flat != nil {
		_, deflate = flat.Accepted()
	}
	// The request's context ends when the handler returns; the
	// connection lives on under the broker's.
	t.run(b.Context(), b, newConn(nc, t.maxMessage(b, r.mqtt()), deflate), acc, rej)
}

// bufferedConn reads what net/http had buffered before the socket.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	c.r = nil
	return c.Conn.Read(p)
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		found := false
		httphead.ScanTokens([]byte(v), func(tok []byte) bool {
			if equalFold(string(tok), token) {
				found = true
				return false
			}
			return true
		})
		if found {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

func cutByte(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// limits counts upgraded connections in all and per client IP.
type limits struct {
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func (l *limits) acquire(ip netip.Addr, max, maxPerIP int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.total >= max {
		return false
	}
	if maxPerIP > 0 && l.perIP[ip] >= maxPerIP {
		return false
	}
	l.total++
	if l.perIP == nil {
		l.perIP = make(map[netip.Addr]int)
	}
	l.perIP[ip]++
	return true
}

func (l *limits) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// String describes the transport for logs.
func (t *Transport) String() string { return fmt.Sprintf("websocket %s", t.Address) }
