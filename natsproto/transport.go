// Package natsproto speaks the NATS client protocol (INFO, CONNECT, PUB,
// HPUB, SUB, UNSUB, MSG, HMSG, PING, PONG, +OK, -ERR) over TCP, TLS,
// WebSocket and in-process connections, with nats-server's limits,
// defaults and error strings. Package config builds it from the
// top-level listen, host, port and tls {} keys.
//
// New builds a Transport from Options (host, port, TLS, advertise);
// Listen binds it, so an address error surfaces at once, and Broker.Start
// serves it until Broker.Shutdown. The same Transport is the
// transport.ConnServer the websocket package hands NATS-over-WebSocket
// connections to, and InProcess gives nats.go a connection with no socket
// (nats.InProcessServer). Each connection is a read loop with an in-place
// parser and a transport.Outbound writer.
//
//	nt, _ := natsproto.New(natsproto.Options{Port: 4222})
//	_ = nt.Listen()
//	_ = b.Start(nt)
package natsproto

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/transport"
)

// Options configure the NATS listener.
type Options struct {
	Host string // default 127.0.0.1 when Port is set through Options
	Port int    // 0 picks a free port; -1 is the same as 0 (nats-server's RANDOM_PORT)
	// TLS, when set, makes the listener require TLS (INFO tls_required).
	TLS *transport.TLSOptions
	// ClientAdvertise is the host:port given to clients in connect_urls.
	ClientAdvertise string
	// Nonce sends a nonce in INFO for NKEY/JWT signatures.
	Nonce bool
}

// Transport is the NATS protocol listener. It also serves connections
// handed to it by other transports (WebSocket) and in-process pipes.
type Transport struct {
	transport.Listener
	opts      Options
	tlsCfg    *tls.Config
	inProcess bool
}

var (
	_ transport.Transport  = (*Transport)(nil)
	_ transport.ConnServer = (*Transport)(nil)
)

// New builds the NATS transport. TLS files are loaded here, so a bad
// certificate is reported before the broker starts.
func New(o Options) (*Transport, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1" // INFO host
	}
	t := &Transport{opts: o}
	var err error
	if t.tlsCfg, err = t.Setup("nats", o.Host, o.Port, o.TLS); err != nil {
		return nil, err
	}
	return t, nil
}

// Name is "nats".
func (t *Transport) Name() string { return "nats" }

// Serve accepts connections until Close.
func (t *Transport) Serve(ctx context.Context, b *broker.Broker) error {
	t.Log = b.Logger()
	return t.Accept(ctx, b.Go, func(nc net.Conn) {
		c := &conn{b: b, t: t, handoff: true}
		_ = t.start(ctx, c, nc)
	})
}

// ServeConn runs the NATS protocol on an accepted connection (for
// example a WebSocket one); it returns when the connection ends.
func (t *Transport) ServeConn(ctx context.Context, b *broker.Broker, nc net.Conn, o transport.ConnOptions) error {
	c := &conn{b: b, t: t, ws: o.WebSocket, onEnd: o.OnEnd, handoff: o.OnEnd != nil}
	c.cs, _ = nc.(transport.CloseStatuser)
	if o.Identity != nil || o.Credentials != nil || o.AuthTimeout > 0 || len(o.ConnectURLs) > 0 {
		c.pre = &preAuth{id: o.Identity, cr: o.Credentials, timeout: o.AuthTimeout, urls: o.ConnectURLs}
	}
	return t.start(ctx, c, nc)
}

func (t *Transport) serveConn(ctx context.Context, b *broker.Broker, nc net.Conn, ws bool) error {
	return t.start(ctx, &conn{b: b, t: t, ws: ws}, nc)
}

// preAuth is what a WebSocket connection brings from its handshake.
type preAuth struct {
	id      *auth.Identity    // established at the handshake
	cr      *auth.Credentials // ... from these (checked again at a reload)
	timeout time.Duration     // websocket { authorization { timeout } }
	urls    []string          // INFO ws_connect_urls
	vouched bool              // InProcessAs: id is busbar's own, never checked again
}

// start serves c on nc. Without c.handoff it returns when the connection
// ends.
func (t *Transport) start(ctx context.Context, c *conn, nc net.Conn) error {
	if t.opts.Nonce || c.b.NonceRequired() {
		var raw [11]byte
		_, _ = rand.Read(raw[:])
		c.nonce = []byte(base64.RawURLEncoding.EncodeToString(raw[:]))
	}
	return c.serve(ctx, nc)
}

// info is the INFO document, with nats-server's field names.
type info struct {
	ServerID     string   `json:"server_id"`
	ServerName   string   `json:"server_name"`
	Version      string   `json:"version"`
	Proto        int      `json:"proto"`
	Go           string   `json:"go"`
	Host         string   `json:"host"`
	Port         int      `json:"port"`
	Headers      bool     `json:"headers"`
	MaxPayload   int      `json:"max_payload"`
	AuthRequired bool     `json:"auth_required,omitempty"`
	TLSRequired  bool     `json:"tls_required,omitempty"`
	TLSAvailable bool     `json:"tls_available,omitempty"`
	ClientID     uint64   `json:"client_id"`
	ClientIP     string   `json:"client_ip,omitempty"`
	Nonce        string   `json:"nonce,omitempty"`
	ConnectURLs  []string `json:"connect_urls,omitempty"`
	WSConnectURL []string `json:"ws_connect_urls,omitempty"`
	LameDuck     bool     `json:"ldm,omitempty"`
}

func (t *Transport) infoLine(c *conn, _ []byte) []byte { return marshalInfo(t.infoDoc(c)) }

// infoDoc is c's INFO. Read loop, or after c.asyncInfo is set.
func (t *Transport) infoDoc(c *conn) info {
	opts := c.b.Options()
	in := info{
		ServerID: c.b.ID(), ServerName: opts.ServerName, Version: broker.Version,
		Proto: 1, Go: broker.GoVersion(), Host: t.opts.Host, Port: t.port(),
		Headers: true, MaxPayload: opts.MaxPayload, AuthRequired: c.b.AuthRequired(),
		TLSRequired: t.tlsCfg != nil && !c.ws, Nonce: string(c.nonce),
	}
	if c.sess != nil {
		in.ClientID = c.sess.ID()
	}
	if host, _, err := net.SplitHostPort(c.tc.NetConn().RemoteAddr().String()); err == nil {
		in.ClientIP = host
	}
	if t.opts.ClientAdvertise != "" && !c.ws {
		in.ConnectURLs = []string{t.opts.ClientAdvertise}
	}
	if c.pre != nil {
		in.WSConnectURL = c.pre.urls
	}
	return in
}

func marshalInfo(in info) []byte {
	js, _ := json.Marshal(in)
	return append(append([]byte("INFO "), js...), '\r', '\n')
}

func (t *Transport) port() int {
	if a, ok := t.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return t.opts.Port
}

// sendInfo writes INFO and, when the listener requires TLS, upgrades the
// connection (nats-server sends INFO in the clear first, unless
// handshake_first). It returns the connection to use from then on.
func (t *Transport) sendInfo(ctx context.Context, c *conn) (net.Conn, error) {
	nc := c.tc.NetConn()
	if t.tlsCfg != nil && !c.ws && t.opts.TLS.HandshakeFirst {
		tc, err := transport.ServerHandshake(ctx, nc, t.tlsCfg, t.opts.TLS.HandshakeTimeout())
		if err != nil {
			return nc, err
		}
		nc = tc
	}
	if _, err := nc.Write(t.infoLine(c, nil)); err != nil {
		return nc, err
	}
	if t.tlsCfg != nil && !c.ws && !t.opts.TLS.HandshakeFirst {
		tc, err := transport.ServerHandshake(ctx, nc, t.tlsCfg, t.opts.TLS.HandshakeTimeout())
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A client that never started TLS, as nats-server tells it.
				_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = nc.Write([]byte("-ERR '" + errTLSRequired.text + "'\r\n"))
			}
			return nc, err
		}
		nc = tc
	}
	return nc, nil
}

// InProcess lets nats.go connect without a socket:
//
//	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)))
func InProcess(b *broker.Broker) interface{ InProcessConn() (net.Conn, error) } {
	return inProcess{b: b, t: &Transport{opts: Options{Host: "in-process"}, inProcess: true}}
}

type inProcess struct {
	b  *broker.Broker
	t  *Transport
	id *auth.Identity // InProcessAs
}

// InProcessAs is InProcess for a client of busbar's own services (the hub
// state, say): it is id without presenting credentials, and a reload
// leaves it alone (broker.Session.Vouch). A host's own clients use
// InProcess and authenticate.
func InProcessAs(b *broker.Broker, id *auth.Identity) interface{ InProcessConn() (net.Conn, error) } {
	return inProcess{b: b, t: &Transport{opts: Options{Host: "in-process"}, inProcess: true}, id: id}
}

// InProcessConn returns the client end of a pipe whose server end runs
// the NATS protocol on the broker.
func (p inProcess) InProcessConn() (net.Conn, error) {
	if p.b.Closed() {
		return nil, broker.ErrClosed
	}
	client, server := net.Pipe()
	if p.id != nil {
		p.b.Go(func() {
			_ = p.t.start(p.b.Context(), &conn{b: p.b, t: p.t, pre: &preAuth{id: p.id, vouched: true}}, server)
		})
		return client, nil
	}
	p.b.Go(func() { _ = p.t.serveConn(p.b.Context(), p.b, server, false) })
	return client, nil
}
