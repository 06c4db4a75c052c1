package config

import (
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/busbar/busbar/transport"
)

// Top-level keys nats-server knows that busbar does not implement.
var ignoredTop = []string{
	"trace_verbose", "trace_headers", "logtime_utc", "mappings", "maps",
	"disable_sublist_cache", "no_sublist_cache", "default_sentinel", "https", "https_port",
	"http_base_path", "cluster", "gateway", "logfile_size_limit", "log_size_limit",
	"logfile_max_num", "log_max_num", "syslog", "remote_syslog",
	"ports_file_dir", "prof_port", "prof_block_rate", "proxy_protocol", "max_traced_msg_len",
	"max_sub_tokens", "max_subscription_tokens", "ocsp", "allow_non_tls", "write_timeout",
	"resolver_tls", "resolver_pinned_accounts",
	"no_header_support", "trusted",
	"trusted_keys", "connect_error_reports", "reconnect_error_reports", "server_tags",
	"server_metadata", "feature_flags", "default_js_domain", "ocsp_cache",
	"no_fast_producer_stall", "proxies",
}

// topState is what the top-level keys leave for the checks that follow
// them (finish).
type topState struct {
	noAuthUser   Pos
	monitorHost  string
	resolverSeen bool
}

// config maps the top-level keys, the registered transport blocks among
// them (mqtt {}, websocket {}, a host's).
func (d *dec) config(root *Map) *Config {
	c := &Config{Log: LogOptions{Logtime: true}, LameDuckDuration: DefaultLameDuck}
	c.NATS.Host, c.NATS.Port = DefaultHost, DefaultPort
	var st topState
	f := d.topFields(c, &st)
	d.addTransportFields(f, c)
	d.walk(root, block{fields: f, ignored: ignoredTop})
	d.finish(c, &st)
	return c
}

// topFields is the table of the top-level keys, transport blocks aside.
func (d *dec) topFields(c *Config, st *topState) map[string]field {
	f := map[string]field{
		"listen":             func(e *Entry) { d.hostPort(e, &c.NATS.Host, &c.NATS.Port) },
		"host":               d.setStr(&c.NATS.Host),
		"port":               d.setPort(&c.NATS.Port),
		"server_name":        func(e *Entry) { d.serverName(e, &c.Broker.ServerName) },
		"client_advertise":   d.setStr(&c.NATS.ClientAdvertise),
		"max_payload":        d.setInt(&c.Broker.MaxPayload, 1, maxPayloadLimit),
		"max_control_line":   d.setInt(&c.Broker.MaxControlLine, 1, math.MaxInt32),
		"max_pending":        d.setInt64(&c.Broker.MaxPending, 1, math.MaxInt64),
		"max_connections":    d.setInt(&c.Broker.MaxConnections, -1, math.MaxInt32),
		"max_subscriptions":  d.setInt(&c.Broker.MaxSubscriptions, 0, math.MaxInt32),
		"max_closed_clients": d.setInt(&c.Broker.MaxClosedClients, -1, math.MaxInt32),
		"ping_interval":      d.setDur(&c.Broker.PingInterval),
		"ping_max":           d.setInt(&c.Broker.PingMax, 1, math.MaxInt32),
		"write_deadline":     d.setDur(&c.Broker.WriteDeadline),
		"lame_duck_duration": func(e *Entry) { d.lameDuckDuration(e, c) },
		"lame_duck_grace_period": func(e *Entry) {
			if x, ok := d.duration(e); ok { // refuses a negative one
				c.Broker.LameDuckGracePeriod = x
			}
		},
		"no_auth_user": func(e *Entry) {
			if s, ok := d.str(e); ok {
				c.Auth.NoAuthUser, st.noAuthUser = s, e.Value.Pos
			}
		},
		"authorization":    func(e *Entry) { d.authorization(e, c) },
		"accounts":         func(e *Entry) { d.accounts(e, c) },
		"operator":         func(e *Entry) { d.operators(e, c) },
		"resolver":         func(e *Entry) { st.resolverSeen = true; d.resolver(e, c) },
		"resolver_preload": func(e *Entry) { d.resolverPreload(e, c) },
		"tls": func(e *Entry) {
			c.NATS.TLS = d.tls(e, "tls") // verify_and_map: tlsMapConns
		},
		"http":       func(e *Entry) { d.hostPort(e, &st.monitorHost, &c.Monitor.Port) },
		"http_port":  d.setPort(&c.Monitor.Port),
		"debug":      d.setBool(&c.Log.Debug),
		"trace":      d.setBool(&c.Log.Trace),
		"logtime":    d.setBool(&c.Log.Logtime),
		"log_file":   d.setStr(&c.Log.File),
		"log_format": func(e *Entry) { d.logFormat(e, &c.Log.Format) },
		"jetstream":  func(e *Entry) { d.jetstream(e, &c.Store) },
		"store_dir":  func(e *Entry) { c.Store.Enabled = true; d.setStr(&c.Store.Dir)(e) },
		"leafnodes":  func(e *Entry) { c.Leafnodes = d.leafnodes(e) },

		"system_account":    d.setStr(&c.SystemAccount),
		"no_system_account": d.setBool(&c.NoSystemAccount),
		"pid_file":          d.setStr(&c.PidFile),
	}
	alias(f, "host", "net")
	alias(f, "max_connections", "max_conn")
	alias(f, "max_subscriptions", "max_subs")
	alias(f, "http_port", "monitor_port")
	alias(f, "log_file", "logfile")
	alias(f, "store_dir", "storedir")
	alias(f, "leafnodes", "leaf")
	alias(f, "system_account", "system")
	alias(f, "no_system_account", "no_system", "no_sys_acc")
	alias(f, "pid_file", "pidfile")
	alias(f, "operator", "operators", "root", "roots", "root_operator", "root_operators")
	alias(f, "resolver", "account_resolver", "accounts_resolver")
	return f
}

func (d *dec) lameDuckDuration(e *Entry, c *Config) {
	if x, ok := d.duration(e); ok {
		if x < minLameDuckDuration {
			d.errf(e.Value.Pos, "lame_duck_duration: %s is under the minimum of 30s", x)
			return
		}
		c.LameDuckDuration, c.Broker.LameDuckDuration = x, x
	}
}

// finish fills the defaults and runs the checks that need the whole file.
func (d *dec) finish(c *Config, st *topState) {
	if c.Monitor.Port != 0 {
		c.Monitor.Host = c.NATS.Host
		if st.monitorHost != "" {
			c.Monitor.Host = st.monitorHost
		}
	}
	if c.Store.Enabled && c.Store.Dir == "" {
		c.Store.Dir = filepath.Join(os.TempDir(), filepath.FromSlash(defaultStoreSubdir))
	}
	c.Broker.AuthTimeout = c.Auth.Timeout
	if len(c.Auth.Operators) > 0 || hasNKeys(c) {
		c.NATS.Nonce = true
	}
	if len(c.Auth.Operators) > 0 && !st.resolverSeen && len(c.Auth.ResolverPreload) > 0 {
		c.Auth.Resolver = "MEMORY"
	}
	c.Auth.TLSMapConns = tlsMapConns(c)
	d.checkAuth(c, st.noAuthUser)
	if g := c.Broker.LameDuckGracePeriod; g > 0 && g >= c.LameDuckDuration {
		d.errf(d.pos["lame_duck_grace_period"], "lame duck grace period (%s) should be strictly lower than lame duck duration (%s)", g, c.LameDuckDuration)
	}
	if c.Broker.MaxPending > 0 && int64(c.Broker.MaxPayload) > c.Broker.MaxPending {
		d.errf(d.pos["max_payload"], "max_payload %d is larger than max_pending %d", c.Broker.MaxPayload, c.Broker.MaxPending)
	}
}

// alias makes each name take the handler of key.
func alias(f map[string]field, key string, names ...string) {
	for _, n := range names {
		f[n] = f[key]
	}
}

func (d *dec) serverName(e *Entry, dst *string) {
	s, ok := d.str(e)
	if !ok {
		return
	}
	if strings.ContainsAny(s, " \t\r\n") {
		d.errf(e.Value.Pos, "server_name %q must not contain spaces", s)
		return
	}
	*dst = s
}

func (d *dec) logFormat(e *Entry, dst *string) {
	s, ok := d.str(e)
	if !ok {
		return
	}
	switch strings.ToLower(s) {
	case "text", "json":
		*dst = strings.ToLower(s)
	default:
		d.errf(e.Value.Pos, "log_format: %q is not \"text\" or \"json\"", s)
	}
}

// jetstream: `enabled`/`disabled`, a boolean, or {store_dir: DIR}.
func (d *dec) jetstream(e *Entry, st *StoreOptions) {
	if e.Value.Kind != KindMap {
		if b, ok := d.boolean(e); ok {
			st.Enabled = b
		}
		return
	}
	st.Enabled = true
	f := map[string]field{
		"store_dir": d.setStr(&st.Dir),
		"sync_interval": func(e *Entry) {
			if e.Value.Kind == KindString && e.Value.Str == "always" {
				st.SyncInterval = 0 // every commit is synced anyway
				return
			}
			d.setDur(&st.SyncInterval)(e)
		},
		"enabled": d.setBool(&st.Enabled),
		"disabled": func(e *Entry) {
			if b, ok := d.boolean(e); ok {
				st.Enabled = !b
			}
		},
	}
	alias(f, "store_dir", "store", "storedir")
	alias(f, "enabled", "enable")
	alias(f, "disabled", "disable")
	d.walk(e.Value.Map, block{name: "jetstream", fields: f, ignored: []string{
		"strict", "sync", "max_memory_store", "max_mem_store", "max_mem",
		"max_file_store", "max_file", "domain", "key", "ek", "encryption_key", "prev_key",
		"prev_ek", "prev_encryption_key", "cipher", "extension_hint", "limits", "tpm",
		"unique_tag", "max_outstanding_catchup", "max_buffered_size", "max_buffered_msgs",
		"request_queue_limit", "info_queue_limit", "meta_compact", "meta_compact_size",
		"meta_compact_sync", "max_concurrent_io",
	}})
}

// tls reads a `tls {}` block (path names it in messages: "tls",
// "websocket.tls", ...). Certificates are loaded when a transport is
// built (Transports, Check), not here.
func (d *dec) tls(e *Entry, path string) *transport.TLSOptions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	t := &transport.TLSOptions{}
	f := map[string]field{
		"cert_file":      d.setStr(&t.CertFile),
		"key_file":       d.setStr(&t.KeyFile),
		"ca_file":        d.setStr(&t.CAFile),
		"verify":         d.setBool(&t.Verify),
		"verify_and_map": d.setBool(&t.VerifyAndMap),
		"timeout":        d.setDur(&t.Timeout),
		"min_version": func(e *Entry) {
			s, ok := d.str(e)
			if !ok {
				return
			}
			v := strings.TrimPrefix(strings.ToLower(s), "tls")
			v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), " ")
			if v != "1.2" && v != "1.3" {
				d.errf(e.Value.Pos, "min_version: %q is not \"1.2\" or \"1.3\"", s)
				return
			}
			t.MinVersion = v
		},
		"cipher_suites":   d.setStrings(&t.CipherSuites),
		"handshake_first": d.setBool(&t.HandshakeFirst),
	}
	alias(f, "handshake_first", "first", "immediate")
	d.walk(m, block{name: path, fields: f, ignored: []string{
		"insecure", "verify_cert_and_check_known_urls", "allow_insecure_cipher_suites",
		"curve_preferences", "connection_rate_limit", "pinned_certs", "cert_store",
		"cert_match_by", "cert_match", "ca_certs_match", "cert_match_skip_invalid",
		"ocsp_peer", "certs", "certificates",
	}})
	if t.CertFile == "" {
		d.errf(e.Value.Pos, "%s: cert_file is required", path)
	}
	if t.KeyFile == "" {
		d.errf(e.Value.Pos, "%s: key_file is required", path)
	}
	return t
}
