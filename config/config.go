// Package config reads the nats-server configuration format into typed
// busbar options: broker limits, authentication and accounts, the NATS
// listener, the websocket {}, mqtt {} and leafnodes {} blocks, monitoring,
// logging and the durable store (jetstream { store_dir }).
//
// The format: `key: value`, `key = value` or `key value`; {} maps and []
// lists; # and // comments; quoted and bare strings; integers with size
// suffixes (k = 1000, kb = 1024, ...); durations; booleans in every
// spelling; variables ($name, then environment variables); `include`
// relative to the including file. busbar also accepts map entries
// separated only by blanks ({user: foo password: bar}). Every error is
// "FILE:LINE:COL: message"; keys nats-server knows but busbar does not
// implement are warnings. Reload applies a changed file to a running
// broker, or refuses it whole.
//
// Every listener is built through one registry of transport blocks
// (RegisterTransport): the NATS listener, mqtt {} and websocket {} are
// registered by this package, and a host registers its own transport and
// block from its init, which the file then configures like theirs
// (examples/unixsocket).
//
//	cfg, err := config.Load("busbar.conf")
//	opts, err := cfg.BrokerOptions(logger)
//	st, err := cfg.OpenStore(logger) // nil, nil without jetstream
//	b, err := broker.New(opts)        // with opts.Store = st when st != nil
//	svcs, err := cfg.Transports()
package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/store/filestore"
	"github.com/busbar/busbar/transport"
)

// Config is a parsed configuration. Hosts may change any field before
// building a broker from it.
type Config struct {
	File  string   // the main file; "" when parsed from bytes
	Files []string // every file read, included ones after the main one

	// Broker holds the limits and server name. Its Authenticator is nil:
	// BrokerOptions builds one from Auth (a host may set its own).
	Broker broker.Options
	Auth   auth.Options
	NATS   natsproto.Options // listen/host/port, client_advertise, tls {}

	Monitor          HostPort // http / http_port; Port 0: off
	Log              LogOptions
	LameDuckDuration time.Duration
	Store            StoreOptions // jetstream
	PidFile          string       // pid_file: where the command writes its process id

	// SystemAccount is system_account: the account whose users may send
	// nats-server's $SYS.REQ requests; "" means DefaultSystemAccount.
	// NoSystemAccount (no_system_account) turns the system account off.
	SystemAccount   string
	NoSystemAccount bool

	WebSocket *WebSocketOptions // nil: no websocket {} block
	MQTT      *MQTTOptions      // nil: no mqtt {} block
	Leafnodes *LeafnodeOptions  // nil: no leafnodes {} block

	// Blocks holds the options of each transport block a host registered
	// (RegisterTransport) and the file has, by the registered name, as
	// its Decode returned them; Transports builds from them.
	Blocks map[string]any

	// Warnings: nats-server keys busbar ignores. Notices: defaults busbar
	// chose that a start-up line should mention.
	Warnings []Warning
	Notices  []Warning

	pos map[string]Pos // key path ("websocket.port") → where it was set
}

// HostPort is a listen address.
type HostPort struct {
	Host string
	Port int
}

// Addr is host:port.
func (h HostPort) Addr() string { return fmt.Sprintf("%s:%d", h.Host, h.Port) }

// LogOptions are the logging keys.
type LogOptions struct {
	Debug   bool
	Trace   bool
	Logtime bool   // default true
	File    string // log_file; "" is stderr
	Format  string // (busbar) log_format: "text" (default) or "json"
}

// StoreOptions is the `jetstream` key: busbar's durable store.
type StoreOptions struct {
	Enabled      bool
	Dir          string        // store_dir; default busbar/store under the OS temp dir
	SyncInterval time.Duration // sync_interval: the longest a write waits to share an fsync (0: none)
	Repair       bool          // (busbar) cut a corrupt log at its first bad record (--store_repair)
}

// DefaultStoreDir is where the durable store lives when the
// configuration enables it without store_dir: busbar/store under the OS
// temp dir (logged at start).
func DefaultStoreDir() string {
	return filepath.Join(os.TempDir(), filepath.FromSlash(defaultStoreSubdir))
}

// OpenStore opens the durable store the jetstream key selects (nil, nil
// when it selects none). The caller closes it after the broker's
// Shutdown.
func (c *Config) OpenStore(logger *slog.Logger) (*filestore.Store, error) {
	if !c.Store.Enabled {
		return nil, nil
	}
	st, err := filestore.Open(c.Store.Dir, filestore.Options{
		SyncInterval: c.Store.SyncInterval, Repair: c.Store.Repair, Logger: logger,
	})
	if err != nil {
		return nil, c.errorAt("jetstream", err)
	}
	return st, nil
}

// SystemAccountName is the system account the configuration selects:
// system_account, DefaultSystemAccount without it, "" with
// no_system_account.
func (c *Config) SystemAccountName() string {
	switch {
	case c.NoSystemAccount:
		return ""
	case c.SystemAccount != "":
		return c.SystemAccount
	}
	return DefaultSystemAccount
}

// Defaults for a configuration file, where it leaves a key out.
const (
	DefaultSystemAccount  = "$SYS"      // nats-server's
	DefaultHost           = "127.0.0.1" // busbar's embedded default; nats-server's is 0.0.0.0
	DefaultPort           = 4222
	DefaultLameDuck       = 2 * time.Minute
	DefaultMQTTAckWait    = 30 * time.Second
	DefaultMaxAckPending  = 1024
	DefaultWSHandshake    = 2 * time.Second
	DefaultLeafReconnect  = time.Second
	DefaultMaxHandshake   = 8 << 10
	minLameDuckDuration   = 30 * time.Second
	maxPayloadLimit       = 64 << 20 // nats-server refuses more
	defaultStoreSubdir    = "busbar/store"
	defaultWebSocketPort  = 8080 // unused unless websocket {} sets no port
	defaultMQTTPort       = 1883
	defaultMonitoringPort = 8222
)

// Load reads and checks the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{Pos: Pos{File: path}, Msg: fmt.Sprintf("cannot read configuration: %v", unwrapPathError(err))}}
	}
	cfg, err := parse(data, path, filepath.Dir(path), nil)
	if cfg != nil {
		cfg.File = path
	}
	return cfg, err
}

// Parse reads a configuration from data. name labels positions in
// errors; includes are relative to name's directory.
func Parse(data []byte, name string) (*Config, error) {
	if name == "" {
		name = "config"
	}
	return parse(data, name, filepath.Dir(name), nil)
}

// parse is Load and Parse with injectable file and environment access
// (tests).
func parse(data []byte, name, dir string, st *parseState) (*Config, error) {
	if st == nil {
		st = &parseState{}
	}
	t, err := parseTree(data, name, dir, st)
	if err != nil {
		return nil, Errors{asError(err)}
	}
	d := &dec{pos: make(map[string]Pos), dir: dir, readFile: st.readFile}
	cfg := d.config(t.root)
	cfg.Files = t.files
	cfg.pos = d.pos
	cfg.Warnings = d.warns
	cfg.Notices = d.notices
	if len(d.errs) > 0 {
		sortErrors(d.errs, t.files)
		return nil, d.errs
	}
	return cfg, nil
}

func asError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return &Error{Msg: err.Error()}
}

// Default returns the configuration of an empty file: NATS on
// 127.0.0.1:4222, no authentication, nats-server's limits.
func Default() *Config {
	cfg, err := Parse(nil, "default")
	if err != nil {
		panic(err) // an empty file always parses
	}
	return cfg
}

// KeyPos reports where key path (as "port" or "websocket.tls.cert_file")
// was set, and whether it was.
func (c *Config) KeyPos(path string) (Pos, bool) {
	p, ok := c.pos[path]
	return p, ok
}

// BrokerOptions returns the broker options with logger and an
// Authenticator built from Auth (unless Broker.Authenticator is set).
func (c *Config) BrokerOptions(logger *slog.Logger) (broker.Options, error) {
	o := c.Broker
	o.Logger = logger
	if o.Authenticator == nil {
		a, err := c.Authenticator(logger)
		if err != nil {
			return o, err
		}
		o.Authenticator = a
	}
	return o, nil
}

// Authenticator builds the built-in Authenticator from Auth (nil when
// the configuration asks for no authentication). logger receives auth's
// start-up warnings.
func (c *Config) Authenticator(logger *slog.Logger) (auth.Authenticator, error) {
	ao := c.Auth
	ao.Logger = logger
	if c.WebSocket != nil && c.WebSocket.NoAuthUser != "" || c.MQTT != nil && c.MQTT.NoAuthUser != "" {
		ao.NoAuthUsers = make(map[auth.ConnType]string, 3)
		for k, v := range c.Auth.NoAuthUsers {
			ao.NoAuthUsers[k] = v
		}
		if c.WebSocket != nil && c.WebSocket.NoAuthUser != "" {
			ao.NoAuthUsers[auth.ConnWebSocket] = c.WebSocket.NoAuthUser
		}
		if c.MQTT != nil && c.MQTT.NoAuthUser != "" {
			ao.NoAuthUsers[auth.ConnMQTT] = c.MQTT.NoAuthUser
			ao.NoAuthUsers[auth.ConnMQTTWS] = c.MQTT.NoAuthUser
		}
	}
	a, err := auth.New(ao)
	if err != nil {
		return nil, c.errorAt(c.authKey(), err)
	}
	return c.transportAuth(a, logger)
}

// transportAuth applies the websocket {} and mqtt {} blocks' own
// `authorization {}` (a user or token for that transport) over the main
// one. As the nats-server documentation says, it applies only when no
// users are configured; with users it is ignored with a warning (the
// users decide; nats-server refuses such a file).
func (c *Config) transportAuth(main auth.Authenticator, logger *slog.Logger) (auth.Authenticator, error) {
	per := map[auth.ConnType]auth.Authenticator{}
	add := func(sa *SimpleAuth, key string, types ...auth.ConnType) error {
		if sa == nil || sa.Username == "" && sa.Token == "" {
			return nil
		}
		if len(c.Auth.Users) > 0 {
			if logger != nil {
				msg := key + ": username/token ignored: users are configured in the main authorization block"
				if p, ok := c.pos[key]; ok {
					msg = p.String() + ": " + msg
				}
				logger.Warn(msg)
			}
			return nil
		}
		a := auth.Token(sa.Token)
		if sa.Username != "" {
			a = auth.UserPassword(sa.Username, sa.Password)
		}
		for _, t := range types {
			per[t] = a
		}
		return nil
	}
	if c.WebSocket != nil {
		if err := add(c.WebSocket.Authorization, "websocket.authorization", auth.ConnWebSocket); err != nil {
			return nil, err
		}
	}
	if c.MQTT != nil {
		if err := add(c.MQTT.Authorization, "mqtt.authorization", auth.ConnMQTT, auth.ConnMQTTWS); err != nil {
			return nil, err
		}
	}
	if len(per) == 0 {
		return main, nil
	}
	return auth.ByConnType(per, main), nil
}

// authKey is the key an authentication error is reported at.
func (c *Config) authKey() string {
	for _, k := range []string{"authorization", "accounts", "operator", "no_auth_user"} {
		if _, ok := c.pos[k]; ok {
			return k
		}
	}
	return "authorization"
}

// errorAt positions err at the key path when it is known.
func (c *Config) errorAt(path string, err error) error {
	if p, ok := c.pos[path]; ok {
		return Errors{{Pos: p, Msg: err.Error(), err: err}}
	}
	return err
}

// Check does what Load cannot without side effects on the broker: it
// loads every TLS certificate the configuration names (busbar -t).
func (c *Config) Check() error {
	var errs Errors
	check := func(path string, t *transport.TLSOptions) {
		if t == nil {
			return
		}
		if _, err := t.Config(); err != nil {
			p, ok := c.pos[path]
			if !ok {
				p = Pos{File: c.File, Line: 1, Col: 1}
			}
			errs = append(errs, &Error{Pos: p, Msg: err.Error()})
		}
	}
	check("tls", c.NATS.TLS)
	if c.WebSocket != nil {
		check("websocket.tls", c.WebSocket.TLS)
	}
	if c.MQTT != nil {
		check("mqtt.tls", c.MQTT.TLS)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// sortErrors orders errors by file (as read), line and column.
func sortErrors(es Errors, files []string) {
	rank := make(map[string]int, len(files))
	for i, f := range files {
		if _, ok := rank[f]; !ok {
			rank[f] = i
		}
	}
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return rank[a.File] < rank[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
