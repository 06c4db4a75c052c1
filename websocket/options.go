package websocket

import (
	"net/netip"
	"time"

	"github.com/busbar/busbar/transport"
)

// Options configure the WebSocket transport: the nats-server `websocket
// {}` options plus busbar's handshake authentication and limits. The zero
// value serves NATS and MQTT over plain WebSocket with no origin policy.
type Options struct {
	Host string // default 127.0.0.1
	Port int    // 0 picks a free port
	// TLS makes the listener speak wss://. The config's rule that TLS is
	// required unless no_tls is applied by package config.
	TLS *transport.TLSOptions
	// Advertise is the host:port given to NATS clients (INFO
	// ws_connect_urls).
	Advertise string

	// Origin policy, used only when the request has an Origin header.
	SameOrigin     bool     // the Origin must match the request's Host
	AllowedOrigins []string // exact scheme://host[:port] values

	// Compression accepts permessage-deflate when the client offers it.
	Compression bool
	// HandshakeTimeout bounds the TLS handshake plus the upgrade
	// request and response (default 2s).
	HandshakeTimeout time.Duration

	// Cookies whose values are read as credentials (nats-server names).
	JWTCookie, UserCookie, PassCookie, TokenCookie string
	// AuthTimeout overrides the broker's authentication timeout for
	// WebSocket connections (websocket { authorization { timeout } }).
	AuthTimeout time.Duration
	// Headers are added to the 101 response.
	Headers map[string]string
	// PingInterval, when set, sends a WebSocket ping frame that often
	// (keeps proxies from closing idle connections).
	PingInterval time.Duration

	// Handshake reads credentials from the upgrade request (busbar).
	Handshake Handshake
	// MaxConnections and MaxConnectionsPerIP refuse upgrades over them
	// with 503 (0: no limit). The IP is the peer's, or the client's from
	// X-Forwarded-For when the peer is in TrustedProxies.
	MaxConnections      int
	MaxConnectionsPerIP int
	TrustedProxies      []netip.Prefix
	// MaxHandshakeBytes caps the request line and headers (default
	// 8 KiB): past it 431 and the connection is closed.
	MaxHandshakeBytes int

	// NATS and MQTT serve the upgraded connections. Nil: a NATS or MQTT
	// transport with default options (the config passes the ones of its
	// own listeners, so both ports share settings).
	NATS transport.ConnServer
	MQTT transport.ConnServer
}

// Handshake says where credentials are read from in the upgrade request.
type Handshake struct {
	// Required refuses an upgrade with no valid credential (401).
	Required bool
	// KeyAuth reads a user's api_key.
	KeyAuth Source
	// BasicAuth reads Authorization: Basic user:password.
	BasicAuth bool
	// JWTAuth reads a JWT (a NATS user JWT, or one the external JWT
	// authorizer accepts); a header value may start with "Bearer ".
	JWTAuth Source
	// SubprotocolAuth reads a token offered in Sec-WebSocket-Protocol as
	// "bearer.<base64url>"; it is never echoed.
	SubprotocolAuth bool
	// CloseOnFailure upgrades and then closes with a code and reason a
	// browser can read (4401, 4403, 1013) instead of answering with an
	// HTTP status (on_failure: "close").
	CloseOnFailure bool
}

// Source names a header, query parameter or cookie ("" for none).
type Source struct {
	Header, Query, Cookie string
}

func (s Source) any() bool { return s.Header != "" || s.Query != "" || s.Cookie != "" }

// Defaults.
const (
	DefaultHandshakeTimeout  = 2 * time.Second
	DefaultMaxHandshakeBytes = 8 << 10
)

func (o *Options) setDefaults() {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxHandshakeBytes <= 0 {
		o.MaxHandshakeBytes = DefaultMaxHandshakeBytes
	}
}

// cookieAuth reports whether a cookie can carry a credential.
func (o *Options) cookieAuth() bool {
	return o.JWTCookie != "" || o.UserCookie != "" || o.PassCookie != "" || o.TokenCookie != "" ||
		o.Handshake.KeyAuth.Cookie != "" || o.Handshake.JWTAuth.Cookie != ""
}
