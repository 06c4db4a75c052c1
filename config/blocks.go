package config

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/busbar/busbar/transport"
)

// SimpleAuth is the `authorization {}` of a websocket or mqtt block: one
// user or token for that transport when no users are configured.
type SimpleAuth struct {
	Username, Password, Token string
	Timeout                   time.Duration
}

// WebSocketOptions is the `websocket {}` block.
type WebSocketOptions struct {
	Host             string
	Port             int
	Advertise        string
	TLS              *transport.TLSOptions
	NoTLS            bool
	SameOrigin       bool
	AllowedOrigins   []string
	Compression      bool
	HandshakeTimeout time.Duration // default 2s
	JWTCookie        string
	UserCookie       string
	PassCookie       string
	TokenCookie      string
	NoAuthUser       string
	Authorization    *SimpleAuth
	Headers          map[string]string // extra 101 response headers
	PingInterval     time.Duration

	// (busbar)
	Handshake           *Handshake
	MaxConnections      int
	MaxConnectionsPerIP int
	TrustedProxies      []netip.Prefix
	MaxHandshakeBytes   int // default 8 KiB
}

// Handshake is (busbar) `websocket { handshake {} }`: credentials read
// from the HTTP upgrade request.
type Handshake struct {
	Required        bool
	KeyAuth         *CredentialSource // a user's api_key
	BasicAuth       bool
	JWTAuth         *CredentialSource
	SubprotocolAuth bool
	OnFailure       string // "http" (default) or "close"
}

// CredentialSource names where a credential is read from.
type CredentialSource struct {
	Header, Query, Cookie string
}

// MQTTOptions is the `mqtt {}` block.
type MQTTOptions struct {
	Host          string
	Port          int
	TLS           *transport.TLSOptions
	NoAuthUser    string
	Authorization *SimpleAuth
	AckWait       time.Duration // default 30s
	MaxAckPending int           // 0..65535; 0 means the default, 1024

	// (busbar)
	MaxConnections int
	MaxPacketSize  int
	SessionExpiry  time.Duration // upper bound
	MaxKeepAlive   time.Duration // whole seconds, at most 65535s
	// Bounds on what MQTT sessions hold (mqtt.Options): 0 means the
	// default, -1 no bound. MaxTopicAlias is -1 for the file's 0 (no
	// aliases).
	MaxQueuedBytes    int64
	MaxQueuedMessages int
	MaxOfflineBytes   int64
	MaxTopicAlias     int

	// JSDomain keeps the MQTT state in the JetStream domain of the hub
	// the leafnodes remote links to (package hub); StreamReplicas sets the
	// replicas of the buckets busbar creates there (0: up to 3).
	JSDomain       string
	StreamReplicas int
	jsDomainAt     Pos
}

// LeafnodeOptions is the `leafnodes {}` block: busbar connects out only.
type LeafnodeOptions struct {
	Reconnect time.Duration
	Remotes   []LeafRemote
}

// LeafRemote is one entry of `leafnodes { remotes [...] }`.
type LeafRemote struct {
	URLs             []string
	Account          string
	Credentials      string
	NKey             string
	User, Password   string
	TLS              *transport.TLSOptions
	DenyImports      []string
	DenyExports      []string
	NoRandomize      bool
	FirstInfoTimeout time.Duration
	DialTimeout      time.Duration
	WSCompression    bool
	WSNoMasking      bool
}

func (d *dec) simpleAuth(e *Entry, name string) *SimpleAuth {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	a := &SimpleAuth{}
	f := map[string]field{
		"username": d.setStr(&a.Username),
		"password": d.setStr(&a.Password),
		"token":    d.setStr(&a.Token),
		"timeout":  d.setDur(&a.Timeout),
	}
	alias(f, "username", "user")
	alias(f, "password", "pass")
	d.walk(m, block{name: name, fields: f})
	if a.Token != "" && a.Username != "" {
		d.errf(e.Value.Pos, "%s: a token and a username cannot be combined", name)
	}
	return a
}

// websocket reads `websocket {}`; TLS is required unless no_tls: true.
func (d *dec) websocket(e *Entry, c *Config) *WebSocketOptions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	w := &WebSocketOptions{HandshakeTimeout: DefaultWSHandshake, MaxHandshakeBytes: DefaultMaxHandshake}
	var sameOriginSet bool
	f := map[string]field{
		"listen":          func(e *Entry) { d.hostPort(e, &w.Host, &w.Port) },
		"host":            d.setStr(&w.Host),
		"port":            d.setPort(&w.Port),
		"advertise":       d.setStr(&w.Advertise),
		"tls":             func(e *Entry) { w.TLS = d.tls(e, "websocket.tls") },
		"no_tls":          d.setBool(&w.NoTLS),
		"same_origin":     func(e *Entry) { sameOriginSet = true; d.setBool(&w.SameOrigin)(e) },
		"allowed_origins": d.setStrings(&w.AllowedOrigins),
		"compression":     d.setBool(&w.Compression),
		"handshake_timeout": func(e *Entry) {
			if x, ok := d.duration(e); ok {
				if x == 0 {
					x = DefaultWSHandshake
				}
				w.HandshakeTimeout = x
			}
		},
		"jwt_cookie":             d.setStr(&w.JWTCookie),
		"user_cookie":            d.setStr(&w.UserCookie),
		"pass_cookie":            d.setStr(&w.PassCookie),
		"token_cookie":           d.setStr(&w.TokenCookie),
		"no_auth_user":           d.setStr(&w.NoAuthUser),
		"authorization":          func(e *Entry) { w.Authorization = d.simpleAuth(e, "websocket.authorization") },
		"headers":                func(e *Entry) { w.Headers = d.headers(e) },
		"ping_interval":          d.setDur(&w.PingInterval),
		"handshake":              func(e *Entry) { w.Handshake = d.handshake(e) },
		"max_connections":        d.setInt(&w.MaxConnections, 0, math.MaxInt32),
		"max_connections_per_ip": d.setInt(&w.MaxConnectionsPerIP, 0, math.MaxInt32),
		"trusted_proxies":        func(e *Entry) { w.TrustedProxies = d.trustedProxies(e, w.TrustedProxies) },
		"max_handshake_bytes":    d.setInt(&w.MaxHandshakeBytes, 256, 1<<20),
	}
	alias(f, "host", "net")
	alias(f, "allowed_origins", "allowed_origin", "allow_origins", "allow_origin", "origins", "origin")
	alias(f, "compression", "compress")
	alias(f, "authorization", "authentication")
	d.walk(m, block{name: "websocket", fields: f})
	if w.Host == "" {
		w.Host = c.NATS.Host
	}
	d.checkWebSocket(e, w, sameOriginSet)
	return w
}

// checkWebSocket requires TLS unless no_tls, and defaults same_origin to
// true when a cookie may carry credentials and no origin policy is set.
func (d *dec) checkWebSocket(e *Entry, w *WebSocketOptions, sameOriginSet bool) {
	if w.TLS == nil && !w.NoTLS {
		d.errf(e.Value.Pos, "websocket: tls {} is required (or set no_tls: true)")
	}
	cookie := w.JWTCookie != "" || w.UserCookie != "" || w.PassCookie != "" || w.TokenCookie != "" ||
		(w.Handshake != nil && w.Handshake.JWTAuth != nil && w.Handshake.JWTAuth.Cookie != "")
	if cookie && !sameOriginSet && len(w.AllowedOrigins) == 0 {
		w.SameOrigin = true
		d.notices = append(d.notices, Warning{Pos: e.Value.Pos, Msg: "websocket: a cookie can carry credentials and no origin policy is set, so same_origin defaults to true (cross-site WebSocket hijacking)"})
	}
}

// headers reads websocket { headers {} }: extra 101 response headers.
func (d *dec) headers(e *Entry) map[string]string {
	hm, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	h := make(map[string]string, len(hm.Entries))
	for _, x := range hm.Entries {
		if s, ok := d.str(x); ok {
			h[x.Key] = s
		}
	}
	return h
}

// trustedProxies appends the addresses and CIDR prefixes of e to list.
func (d *dec) trustedProxies(e *Entry, list []netip.Prefix) []netip.Prefix {
	strs, ok := d.strings(e)
	if !ok {
		return list
	}
	for i, s := range strs {
		p, err := parsePrefix(s)
		if err != nil {
			at := e.Value.Pos
			if e.Value.Kind == KindList {
				at = e.Value.List[i].Pos
			}
			d.errf(at, "trusted_proxies: %q is not an address or CIDR prefix", s)
			continue
		}
		list = append(list, p)
	}
	return list
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (d *dec) handshake(e *Entry) *Handshake {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	h := &Handshake{OnFailure: "http"}
	source := func(dst **CredentialSource, name string) field {
		return func(e *Entry) {
			sm, ok := d.mapOf(e)
			if !ok {
				return
			}
			s := &CredentialSource{}
			d.walk(sm, block{name: name, fields: map[string]field{
				"header": d.setStr(&s.Header),
				"query":  d.setStr(&s.Query),
				"cookie": d.setStr(&s.Cookie),
			}})
			if *s == (CredentialSource{}) {
				d.errf(e.Value.Pos, "%s: give at least one of header, query, cookie", name)
			}
			*dst = s
		}
	}
	d.walk(m, block{name: "websocket.handshake", fields: map[string]field{
		"required":         d.setBool(&h.Required),
		"key_auth":         source(&h.KeyAuth, "key_auth"),
		"basic_auth":       d.setBool(&h.BasicAuth),
		"jwt_auth":         source(&h.JWTAuth, "jwt_auth"),
		"subprotocol_auth": d.setBool(&h.SubprotocolAuth),
		"on_failure": func(e *Entry) {
			s, ok := d.str(e)
			if !ok {
				return
			}
			if s != "http" && s != "close" {
				d.errf(e.Value.Pos, "on_failure: %q is not \"http\" or \"close\"", s)
				return
			}
			h.OnFailure = s
		},
	}})
	return h
}

// mqtt reads `mqtt {}`.
func (d *dec) mqtt(e *Entry, c *Config) *MQTTOptions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	q := &MQTTOptions{AckWait: DefaultMQTTAckWait, MaxAckPending: DefaultMaxAckPending}
	f := map[string]field{
		"listen":        func(e *Entry) { d.hostPort(e, &q.Host, &q.Port) },
		"host":          d.setStr(&q.Host),
		"port":          d.setPort(&q.Port),
		"tls":           func(e *Entry) { q.TLS = d.tls(e, "mqtt.tls") },
		"no_auth_user":  d.setStr(&q.NoAuthUser),
		"authorization": func(e *Entry) { q.Authorization = d.simpleAuth(e, "mqtt.authorization") },
		"ack_wait": func(e *Entry) {
			if x, ok := d.duration(e); ok {
				if x == 0 {
					x = DefaultMQTTAckWait
				}
				q.AckWait = x
			}
		},
		"max_ack_pending": func(e *Entry) {
			if n, ok := d.integer(e, 0, math.MaxUint16); ok {
				if n == 0 {
					n = DefaultMaxAckPending
				}
				q.MaxAckPending = int(n)
			}
		},
		"max_connections":     d.setInt(&q.MaxConnections, 0, math.MaxInt32),
		"max_queued_bytes":    d.setInt64(&q.MaxQueuedBytes, -1, math.MaxInt64),
		"max_queued_messages": d.setInt(&q.MaxQueuedMessages, -1, math.MaxInt32),
		"max_offline_bytes":   d.setInt64(&q.MaxOfflineBytes, -1, math.MaxInt64),
		"max_topic_alias": func(e *Entry) {
			if n, ok := d.integer(e, 0, math.MaxUint16); ok {
				q.MaxTopicAlias = int(n)
				if n == 0 {
					q.MaxTopicAlias = -1 // none
				}
			}
		},
		"js_domain": func(e *Entry) {
			if v, ok := d.str(e); ok {
				q.JSDomain, q.jsDomainAt = v, e.Value.Pos
			}
		},
		"stream_replicas": d.setInt(&q.StreamReplicas, 0, 5),
		"max_packet_size": d.setInt(&q.MaxPacketSize, 0, 268435455), // MQTT's largest remaining length
		"session_expiry":  d.setDur(&q.SessionExpiry),
		"max_keep_alive": func(e *Entry) {
			if x, ok := d.duration(e); ok {
				if x > math.MaxUint16*time.Second || x%time.Second != 0 {
					d.errf(e.Value.Pos, "max_keep_alive: %s is not whole seconds up to 65535s", x)
					return
				}
				q.MaxKeepAlive = x
			}
		},
	}
	alias(f, "host", "net")
	alias(f, "authorization", "authentication")
	alias(f, "ack_wait", "ackwait")
	alias(f, "max_ack_pending", "max_pending", "max_inflight")
	d.walk(m, block{name: "mqtt", fields: f, ignored: []string{
		"js_api_timeout", "api_timeout", "consumer_replicas",
		"consumer_memory_storage", "consumer_inactive_threshold", "consumer_auto_cleanup",
		"reject_qos2_publish", "downgrade_qos2_subscribe",
	}})
	if q.Host == "" {
		q.Host = c.NATS.Host
	}
	return q
}

// leafnodes reads `leafnodes {}`: remotes only; keys for accepting leaf
// connections warn.
func (d *dec) leafnodes(e *Entry) *LeafnodeOptions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	l := &LeafnodeOptions{Reconnect: DefaultLeafReconnect}
	f := map[string]field{
		"reconnect": d.setDur(&l.Reconnect),
		"remotes": func(e *Entry) {
			if e.Value.Kind != KindList {
				d.wrong(e, "a list of remotes")
				return
			}
			for _, v := range e.Value.List {
				if r, ok := d.leafRemote(v); ok {
					l.Remotes = append(l.Remotes, r)
				}
			}
		},
	}
	alias(f, "reconnect", "reconnect_delay", "reconnect_interval")
	d.walk(m, block{name: "leafnodes", fields: f, ignored: []string{
		"listen", "port", "host", "net", "authorization", "dial_timeout", "tls", "leafnode_advertise",
		"advertise", "no_advertise", "min_version", "minimum_version", "compression",
		"isolate_leafnode_interest", "isolate", "write_deadline", "write_timeout",
	}})
	return l
}

func (d *dec) leafRemote(v *Value) (LeafRemote, bool) {
	var r LeafRemote
	if v.Kind != KindMap {
		d.errf(v.Pos, "remotes: each remote is a {} block, got %s", describe(v))
		return r, false
	}
	f := map[string]field{
		"url":                d.setStrings(&r.URLs),
		"account":            d.setStr(&r.Account),
		"credentials":        d.setStr(&r.Credentials),
		"nkey":               d.setStr(&r.NKey),
		"user":               d.setStr(&r.User),
		"password":           d.setStr(&r.Password),
		"tls":                func(e *Entry) { r.TLS = d.leafTLS(e) },
		"deny_imports":       d.setStrings(&r.DenyImports),
		"deny_exports":       d.setStrings(&r.DenyExports),
		"no_randomize":       d.setBool(&r.NoRandomize),
		"first_info_timeout": d.setDur(&r.FirstInfoTimeout),
		"dial_timeout":       d.setDur(&r.DialTimeout),
		"ws_compression":     d.setBool(&r.WSCompression),
		"ws_no_masking":      d.setBool(&r.WSNoMasking),
	}
	alias(f, "url", "urls")
	alias(f, "account", "local")
	alias(f, "credentials", "creds")
	alias(f, "nkey", "seed")
	alias(f, "user", "username")
	alias(f, "password", "pass")
	alias(f, "deny_imports", "deny_import")
	alias(f, "deny_exports", "deny_export")
	alias(f, "no_randomize", "dont_randomize")
	alias(f, "ws_compression", "ws_compress", "websocket_compress", "websocket_compression")
	alias(f, "ws_no_masking", "websocket_no_masking")
	d.walk(v.Map, block{name: "leafnodes remote", fields: f, ignored: []string{
		"hub", "jetstream_cluster_migrate", "js_cluster_migrate", "isolate_leafnode_interest",
		"isolate", "request_isolation", "compression", "disabled", "proxy",
		"ignore_discovered_servers",
	}})
	if len(r.URLs) == 0 {
		d.errf(v.Pos, "leafnodes remote: url or urls is required")
		return r, false
	}
	for _, u := range r.URLs {
		if !strings.Contains(u, "://") {
			d.errf(v.Pos, "leafnodes remote: %q is not a URL (nats://, tls://, ws://, wss://)", u)
		}
	}
	return r, true
}

// leafTLS is a client-side tls {}: certificates are optional.
func (d *dec) leafTLS(e *Entry) *transport.TLSOptions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	t := &transport.TLSOptions{}
	d.walk(m, block{name: "leafnodes remote tls", fields: map[string]field{
		"cert_file":       d.setStr(&t.CertFile),
		"key_file":        d.setStr(&t.KeyFile),
		"ca_file":         d.setStr(&t.CAFile),
		"timeout":         d.setDur(&t.Timeout),
		"min_version":     d.setStr(&t.MinVersion),
		"handshake_first": d.setBool(&t.HandshakeFirst),
	}, ignored: []string{"insecure", "verify", "cipher_suites", "curve_preferences", "pinned_certs", "first", "immediate"}})
	return t
}
