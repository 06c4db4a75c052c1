// Package auth holds the one authentication interface every busbar
// transport uses, and the Credentials and Identity types it works on.
//
// A transport gathers what the peer presented into Credentials, asks the
// broker's Authenticator, and gets back an Identity whose permissions and
// allowed connection types the broker enforces. New builds the built-in
// Authenticator from Options (users with plain or bcrypt passwords,
// tokens, NKEYs, NATS JWT operator mode, TLS certificate mapping, API
// keys, external JWTs, no_auth_user). Host applications plug in their own
// Authenticator (an AuthenticatorFunc will do), alone or in a Chain with
// the built-in ones. Secrets reach a log only through Credentials'
// LogValue, which redacts them.
package auth

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ConnType is the kind of connection, as allowed_connection_types names it.
type ConnType uint8

// Connection types, with the names nats-server uses in
// allowed_connection_types.
const (
	ConnStandard ConnType = iota + 1
	ConnWebSocket
	ConnMQTT
	ConnMQTTWS
	ConnLeafnode
	ConnLeafnodeWS
	ConnInProcess
)

var connTypeNames = [...]string{
	ConnStandard:   "STANDARD",
	ConnWebSocket:  "WEBSOCKET",
	ConnMQTT:       "MQTT",
	ConnMQTTWS:     "MQTT_WS",
	ConnLeafnode:   "LEAFNODE",
	ConnLeafnodeWS: "LEAFNODE_WS",
	ConnInProcess:  "IN_PROCESS",
}

func (t ConnType) String() string {
	if int(t) < len(connTypeNames) && connTypeNames[t] != "" {
		return connTypeNames[t]
	}
	return "UNKNOWN"
}

// ParseConnType reads a connection type name, case-insensitively.
func ParseConnType(s string) (ConnType, error) {
	for i, n := range connTypeNames {
		if n != "" && strings.EqualFold(n, s) {
			return ConnType(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown connection type %q (want one of STANDARD, WEBSOCKET, MQTT, MQTT_WS, LEAFNODE, LEAFNODE_WS, IN_PROCESS)", ErrConfig, s)
}

// ConnTypes is a set of connection types; the empty set allows all.
type ConnTypes uint16

// Add returns the set with t added.
func (s ConnTypes) Add(t ConnType) ConnTypes { return s | 1<<t }

// Allows reports whether t is in the set, or the set is empty.
func (s ConnTypes) Allows(t ConnType) bool { return s == 0 || s&(1<<t) != 0 }

// Has reports whether t is in the set (the empty set has none).
func (s ConnTypes) Has(t ConnType) bool { return s&(1<<t) != 0 }

// Authenticator decides who a connection is.
//
// For a WebSocket connection it is asked twice: at the handshake, with
// the upgrade request (Credentials.Header, Cookies, Query, RemoteAddr,
// TLS), before anything is upgraded; and at the protocol's CONNECT, with
// what CONNECT carried plus the same request, unless the handshake
// already accepted the connection and CONNECT adds no credential.
// At the handshake, ok=false with no error is not a refusal when the
// request held no credential busbar reads (the client may still send
// one in CONNECT); a refusal there is an error wrapping ErrNotAuthorized.
type Authenticator interface {
	// Authenticate returns the identity for c with ok=true when c is
	// accepted. ok=false with a nil error means "not accepted here": a
	// Chain asks the next Authenticator. A non-nil error wrapping
	// ErrNotAuthorized refuses; any other error means the Authenticator
	// could not decide (a backend is down). Either is logged, never shown
	// to the peer, and the connection is refused.
	Authenticate(ctx context.Context, c *Credentials) (id *Identity, ok bool, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, c *Credentials) (*Identity, bool, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, c *Credentials) (*Identity, bool, error) {
	return f(ctx, c)
}

// Chain asks each Authenticator in turn; the first that accepts wins, the
// first error stops the chain. nil members are skipped. The chain requires
// a nonce when any member does (NonceRequirer).
func Chain(as ...Authenticator) Authenticator {
	c := make(chain, 0, len(as))
	for _, a := range as {
		if a != nil {
			c = append(c, a)
		}
	}
	return c
}

type chain []Authenticator

func (ch chain) Authenticate(ctx context.Context, c *Credentials) (*Identity, bool, error) {
	for _, a := range ch {
		id, ok, err := a.Authenticate(ctx, c)
		if err != nil || ok {
			return id, ok, err
		}
	}
	return nil, false, nil
}

func (ch chain) NonceRequired() bool {
	for _, a := range ch {
		if NonceRequired(a) {
			return true
		}
	}
	return false
}

// Credentials is everything a peer presented. Secrets are redacted by
// LogValue, the only way Credentials reach a log.
type Credentials struct {
	Conn       ConnType
	RemoteAddr net.Addr
	TLS        *tls.ConnectionState

	ClientID string
	User     string
	Password string
	Token    string
	JWT      string
	NKey     string // public NKEY the client claims
	APIKey   string
	Nonce    []byte // the nonce the server sent in INFO
	Sig      []byte // the client's signature over Nonce (raw, decoded)

	// The WebSocket upgrade request, for every connection that arrived
	// that way, at the handshake and again at CONNECT: all its headers,
	// its cookies and its query parameters (RemoteAddr and TLS are the
	// connection's). Nil for other connections. Read only.
	Header  http.Header
	Cookies []*http.Cookie
	Query   url.Values
}

// AddRequest copies the upgrade request of req (Header, Cookies, Query)
// into c, and its RemoteAddr and TLS where c has none: a protocol's
// CONNECT credentials gain what the WebSocket handshake saw. req may be
// nil.
func (c *Credentials) AddRequest(req *Credentials) {
	if req == nil {
		return
	}
	c.Header, c.Cookies, c.Query = req.Header, req.Cookies, req.Query
	if c.RemoteAddr == nil {
		c.RemoteAddr = req.RemoteAddr
	}
	if c.TLS == nil {
		c.TLS = req.TLS
	}
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// LogValue implements slog.LogValuer: identifying fields only, secrets
// replaced by a marker saying whether they were present.
func (c *Credentials) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<nil>")
	}
	attrs := []slog.Attr{slog.String("conn", c.Conn.String())}
	if c.RemoteAddr != nil {
		attrs = append(attrs, slog.String("remote", c.RemoteAddr.String()))
	}
	if c.ClientID != "" {
		attrs = append(attrs, slog.String("client_id", c.ClientID))
	}
	if c.User != "" {
		attrs = append(attrs, slog.String("user", c.User))
	}
	if c.NKey != "" {
		attrs = append(attrs, slog.String("nkey", c.NKey))
	}
	for _, s := range [...]struct{ k, v string }{{"password", c.Password}, {"token", c.Token}, {"jwt", c.JWT}, {"api_key", c.APIKey}} {
		if s.v != "" {
			attrs = append(attrs, slog.String(s.k, redact(s.v)))
		}
	}
	return slog.GroupValue(attrs...)
}

// String is redacted like LogValue, so a %v in a format never leaks.
func (c *Credentials) String() string { return c.LogValue().String() }

// Identity is who an accepted connection is and what it may do.
type Identity struct {
	Name      string
	Account   string
	Perms     *Permissions // nil: everything allowed
	ConnTypes ConnTypes    // empty: every connection type
	MaxConns  int          // per-identity connection limit; 0: none
	Expires   time.Time    // zero: never
}

// LogValue implements slog.LogValuer.
func (id *Identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("<anonymous>")
	}
	return slog.GroupValue(slog.String("name", id.Name), slog.String("account", id.Account))
}
