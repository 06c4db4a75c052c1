// Package transport holds what every busbar transport shares: the
// Transport interface (Listen, Addr, Serve, Close; it satisfies
// broker.Service); Listener, which binds an address with optional TLS
// (TLSOptions) and runs an accept loop with back-off, and which a
// transport of your own can embed; ConnServer and
// ConnOptions, for a protocol served on a connection accepted elsewhere
// (the websocket package's upgrades); and Conn, the one connection layer
// every protocol runs on (natsproto, mqtt, leafnode): the read loop and its
// buffer (parked without a goroutine while idle, on Linux sockets), the
// Outbound write queue written through a Sink (writev on TCP,
// without a goroutine when the socket takes it at once; one frame per
// batch on WebSocket; coalesced records on TLS), the ping timer, close-once
// with a reason and the figures monitoring reads. A protocol implements
// Handler (its parser and handlers) and embeds a Conn.
//
// A transport configured from a file registers its block with
// config.RegisterTransport (package config, which reads the file and sits
// above every transport); this package keeps no registry.
package transport

import (
	"context"
	"net"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// Transport is one listener speaking one protocol. It satisfies
// broker.Service, so Broker.Start runs it and Broker.Shutdown closes it.
type Transport interface {
	// Name is "nats", "mqtt" or "websocket": used in logs, metrics and as
	// the prefix of its errors.
	Name() string
	// Listen binds now, so an address error is reported before serving:
	// "mqtt: listen 0.0.0.0:1883: address already in use".
	Listen() error
	// Addr is the bound address once Listen returned (port 0 resolved).
	Addr() net.Addr
	// Serve runs the accept loop until Close; it returns nil after Close.
	Serve(ctx context.Context, b *broker.Broker) error
	// Close stops accepting. Connections are closed by the broker.
	Close() error
}

// ConnServer serves one already-accepted connection with a protocol. The
// websocket transport uses it to hand an upgraded connection to natsproto
// or mqtt.
type ConnServer interface {
	ServeConn(ctx context.Context, b *broker.Broker, c net.Conn, o ConnOptions) error
}

// ConnOptions tells a ConnServer how a connection arrived.
type ConnOptions struct {
	WebSocket bool // framed by the websocket transport
	TLS       bool
	// Identity was established before the protocol started (WebSocket
	// handshake authentication): a CONNECT without credentials acts as
	// it. Nil when the handshake accepted nothing.
	Identity *auth.Identity
	// Credentials are the WebSocket upgrade request's (its Header,
	// Cookies, Query, RemoteAddr and TLS, and any credential read from
	// it): CONNECT credentials carry the request too
	// (auth.Credentials.AddRequest), and with Identity they are what
	// established it. Nil for a connection without a handshake.
	Credentials *auth.Credentials
	// AuthTimeout overrides the broker's authentication timeout (the
	// websocket { authorization { timeout } }); 0: the broker's.
	AuthTimeout time.Duration
	// ConnectURLs are advertised to the client (NATS INFO
	// ws_connect_urls for WebSocket connections).
	ConnectURLs []string
	// OnEnd, when set, runs once when the connection has ended, and lets
	// ServeConn return as soon as the connection is set up (its read loop
	// goes on on a fresh goroutine, so an idle connection keeps a small
	// stack instead of the upgrade's). Without it ServeConn returns when
	// the connection ends.
	OnEnd func()
}

// Close codes a protocol asks a framed connection (WebSocket) to send.
const (
	ClosePolicyViolation = 1008 // refused: authorization, permissions
	CloseProtocolError   = 1002 // the client broke the protocol
	CloseMessageTooBig   = 1009
	CloseGoingAway       = 1001 // server shutting down
)

// CloseStatuser is a connection that can tell its peer why it closes
// (a WebSocket close frame). The first status set wins.
type CloseStatuser interface {
	SetCloseStatus(code int, reason string)
}

// SetCloseStatus sets the close status on c when c supports one.
func SetCloseStatus(c net.Conn, code int, reason string) {
	if cs, ok := c.(CloseStatuser); ok {
		cs.SetCloseStatus(code, reason)
	}
}
