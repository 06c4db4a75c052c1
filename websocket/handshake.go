package websocket

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// request is what the checks need of an upgrade request, gathered from
// the raw handshake or from an *http.Request. Values are copies.
type request struct {
	path, rawQuery string
	host           string
	origin         string
	authorization  string
	forwardedFor   []string
	cookies        []string // Cookie header values
	keyHeader      string   // the value of Handshake.KeyAuth.Header
	jwtHeader      string   // the value of Handshake.JWTAuth.Header
	protocols      []string // Sec-WebSocket-Protocol tokens
	remote         net.Addr
	tls            bool
	tlsState       *tls.ConnectionState // wss: the connection's TLS state
	header         http.Header          // every header, for the Authenticator (auth.Credentials.Header)
}

// mqtt reports whether the request asks for MQTT: a path ending in
// /mqtt (as nats-server) or the subprotocol mqtt (as MQTT.js and paho).
func (r *request) mqtt() bool {
	if strings.HasSuffix(r.path, "/mqtt") {
		return true
	}
	for _, p := range r.protocols {
		if strings.EqualFold(p, "mqtt") {
			return true
		}
	}
	return false
}

// protocol is the subprotocol to echo: mqtt when asked for, never a
// bearer token.
func (r *request) protocol() string {
	for _, p := range r.protocols {
		if strings.EqualFold(p, "mqtt") {
			return p
		}
	}
	return ""
}

// rejection is a refused upgrade: an HTTP status, or in close mode a
// close code, with a one-line reason that never holds a credential.
type rejection struct {
	status    int
	code      int
	reason    string
	challenge string // WWW-Authenticate for 401
}

func (r *rejection) Error() string { return "websocket: " + r.reason }

// admitted is an accepted upgrade.
type admitted struct {
	ct    auth.ConnType
	id    *auth.Identity
	cr    *auth.Credentials
	ip    netip.Addr
	mqtt  bool
	limit bool // counted against the connection limits: release at the end
}

// admit applies the origin policy, the connection limits and handshake
// authentication to r.
func (t *Transport) admit(ctx context.Context, b *broker.Broker, r *request) (*admitted, *rejection) {
	o := &t.opts
	if b.Closed() {
		return nil, &rejection{status: http.StatusServiceUnavailable, code: CloseTryAgainLater, reason: "server shutting down"}
	}
	if r.origin != "" && !t.originAllowed(r) {
		return nil, &rejection{status: http.StatusForbidden, code: CloseForbidden, reason: "origin not allowed"}
	}
	a := &admitted{mqtt: r.mqtt(), ip: t.clientIP(r)}
	a.ct = auth.ConnWebSocket
	if a.mqtt {
		a.ct = auth.ConnMQTTWS
	}
	cr, present, bad := t.credentials(r, a.ct)
	if bad != "" {
		return nil, t.unauthorized(bad)
	}
	a.cr = cr // the request, for the CONNECT-time credentials too
	// Every upgrade is shown to the Authenticator, so a host's own one
	// decides by what it reads (a header, a cookie) before the upgrade.
	id, err := b.AuthenticateRequest(ctx, cr, present)
	switch {
	case errors.Is(err, broker.ErrConnType):
		return nil, &rejection{status: http.StatusForbidden, code: CloseForbidden, reason: "connection type not allowed for this user"}
	case err != nil:
		t.authFailures.Add(1)
		return nil, t.unauthorized("invalid credentials")
	case id != nil:
		if !b.CanAdmit(id) {
			return nil, &rejection{status: http.StatusServiceUnavailable, code: CloseTryAgainLater, reason: "maximum connections exceeded for this user"}
		}
		a.id = id
	case o.Handshake.Required && b.AuthRequired():
		return nil, t.unauthorized("credentials required")
	}
	if !t.limits.acquire(a.ip, o.MaxConnections, o.MaxConnectionsPerIP) {
		return nil, &rejection{status: http.StatusServiceUnavailable, code: CloseTryAgainLater, reason: "maximum connections exceeded"}
	}
	a.limit = true
	return a, nil
}

func (t *Transport) unauthorized(reason string) *rejection {
	ch := `Bearer realm="busbar"`
	if t.opts.Handshake.BasicAuth {
		ch = `Basic realm="busbar", charset="UTF-8"`
	}
	return &rejection{status: http.StatusUnauthorized, code: CloseUnauthorized, reason: reason, challenge: ch}
}

// credentials reads every credential the configuration allows from r.
// bad names a credential that is present but malformed.
func (t *Transport) credentials(r *request, ct auth.ConnType) (cr *auth.Credentials, present bool, bad string) {
	o := &t.opts
	h := &o.Handshake
	cr = &auth.Credentials{Conn: ct, RemoteAddr: r.remote, TLS: r.tlsState, Header: r.header}
	cr.Query, _ = url.ParseQuery(r.rawQuery) // what parses, as net/http keeps it
	for _, line := range r.cookies {
		if cs, err := http.ParseCookie(line); err == nil {
			cr.Cookies = append(cr.Cookies, cs...)
		}
	}
	query := func(k string) string {
		if k == "" {
			return ""
		}
		return cr.Query.Get(k)
	}
	cookie := func(name string) string {
		if name == "" {
			return ""
		}
		for _, c := range cr.Cookies {
			if c.Name == name {
				return c.Value
			}
		}
		return ""
	}
	if h.KeyAuth.any() {
		cr.APIKey = first(r.keyHeader, query(h.KeyAuth.Query), cookie(h.KeyAuth.Cookie))
	}
	if h.BasicAuth && len(r.authorization) > 6 && strings.EqualFold(r.authorization[:6], "basic ") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.authorization[6:]))
		user, pass, ok := strings.Cut(string(raw), ":")
		if err != nil || !ok || user == "" {
			return cr, true, "malformed basic credentials"
		}
		cr.User, cr.Password = user, pass
	}
	if h.JWTAuth.any() {
		v := r.jwtHeader
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			v = strings.TrimSpace(v[7:])
		}
		cr.JWT = first(v, query(h.JWTAuth.Query), cookie(h.JWTAuth.Cookie))
	}
	if h.SubprotocolAuth {
		for _, p := range r.protocols {
			if len(p) > 7 && strings.EqualFold(p[:7], "bearer.") {
				tok, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p[7:], "="))
				if err != nil || len(tok) == 0 {
					return cr, true, "malformed bearer subprotocol"
				}
				setToken(cr, string(tok))
			}
		}
	}
	// nats-server's cookies.
	if cr.JWT == "" {
		cr.JWT = cookie(o.JWTCookie)
	}
	if cr.User == "" {
		cr.User, cr.Password = cookie(o.UserCookie), cookie(o.PassCookie)
	}
	if cr.Token == "" {
		cr.Token = cookie(o.TokenCookie)
	}
	present = cr.APIKey != "" || cr.User != "" || cr.Password != "" || cr.JWT != "" || cr.Token != ""
	return cr, present, ""
}

// setToken files a bearer token as a JWT when it has a JWT's shape, else
// as a token.
func setToken(cr *auth.Credentials, tok string) {
	if strings.Count(tok, ".") == 2 {
		cr.JWT = tok
	} else {
		cr.Token = tok
	}
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// originAllowed applies same_origin and allowed_origins to an Origin
// header (nats-server: scheme, host and port must match; a missing port
// is the scheme's default).
func (t *Transport) originAllowed(r *request) bool {
	o := &t.opts
	if !o.SameOrigin && len(o.AllowedOrigins) == 0 {
		return true
	}
	scheme, host, port, ok := splitOrigin(r.origin)
	if !ok {
		return false
	}
	if o.SameOrigin {
		rh, rp := r.host, ""
		if h, p, err := net.SplitHostPort(r.host); err == nil {
			rh, rp = h, p
		}
		if rp == "" {
			rp = "80"
			if r.tls {
				rp = "443"
			}
		}
		if !strings.EqualFold(host, rh) || port != rp {
			return false
		}
	}
	if len(o.AllowedOrigins) > 0 {
		for _, a := range o.AllowedOrigins {
			as, ah, ap, ok := splitOrigin(a)
			if ok && as == scheme && strings.EqualFold(ah, host) && ap == port {
				return true
			}
		}
		return false
	}
	return true
}

// splitOrigin parses scheme://host[:port], defaulting the port.
func splitOrigin(s string) (scheme, host, port string, ok bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return "", "", "", false
	}
	scheme = strings.ToLower(u.Scheme)
	host, port = u.Hostname(), u.Port()
	if port == "" {
		switch scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	return scheme, host, port, true
}

// clientIP is the peer's address, or when the peer is a trusted proxy
// the right-most X-Forwarded-For entry that is not itself trusted.
func (t *Transport) clientIP(r *request) netip.Addr {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addrString(r.remote)); err == nil {
		ip = ap.Addr().Unmap()
	}
	if !t.trusted(ip) || len(r.forwardedFor) == 0 {
		return ip
	}
	var hops []string
	for _, v := range r.forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed list: believe only the peer
		}
		a = a.Unmap()
		if !t.trusted(a) {
			return a
		}
		ip = a
	}
	return ip
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (t *Transport) trusted(ip netip.Addr) bool {
	for _, p := range t.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
