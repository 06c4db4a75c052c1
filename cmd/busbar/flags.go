package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/transport"
)

// flags are nats-server's command-line options that busbar implements,
// plus a few of its own.
type flags struct {
	host, user, pass, token, logFile, config string
	name, pidFile, clientAdvertise           string
	port, httpPort, mqttPort, wsPort         int
	debug, trace, version, check, help       bool
	storeRepair, jetstream                   bool
	logtime                                  bool
	tls, tlsVerify                           bool
	tlsCert, tlsKey, tlsCA                   string
	storeDir                                 string
	signal                                   string          // --signal/-sl CMD=PID; --ldm PID is ldm=PID
	set                                      map[string]bool // options given, by their first name
}

// option is one command-line option: its names (the first is the one
// set records), its argument (none for a switch) and what it sets.
type option struct {
	names []string
	arg   string // "" for a switch: -x, -x=true, -x=false
	help  string
	apply func(f *flags, v string) error
}

// section groups options in -h, as nats-server's usage does.
type section struct {
	title string
	opts  []option
}

func str(dst func(f *flags) *string) func(*flags, string) error {
	return func(f *flags, v string) error { *dst(f) = v; return nil }
}

func num(dst func(f *flags) *int) func(*flags, string) error {
	return func(f *flags, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		*dst(f) = n
		return nil
	}
}

func boolean(dst func(f *flags) *bool) func(*flags, string) error {
	return func(f *flags, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(f) = b
		return nil
	}
}

var sections = []section{
	{"Server Options", []option{
		{[]string{"a", "addr", "net"}, "HOST", "bind to HOST (default 127.0.0.1)", str(func(f *flags) *string { return &f.host })},
		{[]string{"p", "port"}, "PORT", "NATS client PORT (default 4222)", num(func(f *flags) *int { return &f.port })},
		{[]string{"n", "name", "server_name"}, "NAME", "server name (default: the generated server id)", str(func(f *flags) *string { return &f.name })},
		{[]string{"P", "pid"}, "FILE", "write the process id to FILE", str(func(f *flags) *string { return &f.pidFile })},
		{[]string{"m", "http_port"}, "PORT", "monitoring PORT (default 8222 with no config file)", num(func(f *flags) *int { return &f.httpPort })},
		{[]string{"c", "config"}, "FILE", "configuration FILE", str(func(f *flags) *string { return &f.config })},
		{[]string{"t"}, "", "check the configuration file and exit", boolean(func(f *flags) *bool { return &f.check })},
		{[]string{"client_advertise"}, "HOST:PORT", "address advertised to NATS clients", str(func(f *flags) *string { return &f.clientAdvertise })},
		{[]string{"sl", "signal"}, "CMD=PID", "send CMD (ldm, reload, quit, term, stop) to the busbar with PID (a number or a pid file) and exit",
			str(func(f *flags) *string { return &f.signal })},
		{[]string{"ldm"}, "PID", "put the busbar with PID in lame duck mode (SIGUSR2) and exit", func(f *flags, v string) error { f.signal = "ldm=" + v; return nil }},
		{[]string{"js", "jetstream"}, "", "enable busbar's durable store (nats-server's JetStream switch)", boolean(func(f *flags) *bool { return &f.jetstream })},
		{[]string{"sd", "store_dir"}, "DIR", "durable store directory (implies --js)", str(func(f *flags) *string { return &f.storeDir })},
		{[]string{"store_repair"}, "", "(busbar) open a corrupt store by cutting its log at the first bad record", boolean(func(f *flags) *bool { return &f.storeRepair })},
		{[]string{"mqtt_port"}, "PORT", "(busbar) MQTT PORT with no config file (default 1883; -1: a free port, 0: none)", num(func(f *flags) *int { return &f.mqttPort })},
		{[]string{"ws_port"}, "PORT", "(busbar) WebSocket PORT, no TLS, with no config file (default 8080; -1: a free port, 0: none)", num(func(f *flags) *int { return &f.wsPort })},
	}},
	{"Logging Options", []option{
		{[]string{"l", "log"}, "FILE", "log to FILE instead of stderr", str(func(f *flags) *string { return &f.logFile })},
		{[]string{"T", "logtime"}, "", "timestamp log lines (default true; -T=false to leave them out)", boolean(func(f *flags) *bool { return &f.logtime })},
		{[]string{"D", "debug"}, "", "debug logging", boolean(func(f *flags) *bool { return &f.debug })},
		{[]string{"V", "trace"}, "", "trace logging", boolean(func(f *flags) *bool { return &f.trace })},
		{[]string{"DV"}, "", "debug and trace logging", func(f *flags, v string) error {
			err := boolean(func(f *flags) *bool { return &f.debug })(f, v)
			f.trace = f.debug
			return err
		}},
	}},
	{"Authorization Options", []option{
		{[]string{"user"}, "USER", "user required for connections", str(func(f *flags) *string { return &f.user })},
		{[]string{"pass"}, "PASSWORD", "password required for connections", str(func(f *flags) *string { return &f.pass })},
		{[]string{"auth"}, "TOKEN", "authorization token required for connections", str(func(f *flags) *string { return &f.token })},
	}},
	{"TLS Options (the NATS listener)", []option{
		{[]string{"tls"}, "", "enable TLS, do not verify clients", boolean(func(f *flags) *bool { return &f.tls })},
		{[]string{"tlscert"}, "FILE", "server certificate file", str(func(f *flags) *string { return &f.tlsCert })},
		{[]string{"tlskey"}, "FILE", "private key of the server certificate", str(func(f *flags) *string { return &f.tlsKey })},
		{[]string{"tlsverify"}, "", "enable TLS, verify client certificates", boolean(func(f *flags) *bool { return &f.tlsVerify })},
		{[]string{"tlscacert"}, "FILE", "CA of the client certificates", str(func(f *flags) *string { return &f.tlsCA })},
	}},
	{"Common Options", []option{
		{[]string{"h", "help"}, "", "show this message", boolean(func(f *flags) *bool { return &f.help })},
		{[]string{"v", "version"}, "", "show the version", boolean(func(f *flags) *bool { return &f.version })},
	}},
}

// notHere are nats-server options busbar does not have, with why: each
// is refused with one line instead of the usage.
var notHere = map[string]string{
	"routes":            "busbar has no cluster of its own: join a NATS cluster as a leaf node (leafnodes { remotes }, docs/CONFIG.md)",
	"cluster":           "",
	"cluster_name":      "",
	"cluster_listen":    "",
	"cluster_advertise": "",
	"no_advertise":      "",
	"connect_retries":   "",
	"s":                 "busbar logs to stderr or a file (-l); not to syslog",
	"syslog":            "",
	"r":                 "",
	"remote_syslog":     "",
	"ms":                "busbar's monitoring is plain HTTP (-m); put TLS in front of it",
	"https_port":        "",
	"profile":           "busbar has no profiling port",
	"ports_file_dir":    "busbar writes no ports file; its start-up line says what listens where",
	"help_tls":          "see the tls {} block in docs/CONFIG.md",
}

// why returns notHere's reason for name (aliases share the first one's).
func why(name string) (string, bool) {
	r, ok := notHere[name]
	if !ok || r != "" {
		return r, ok
	}
	groups := [][]string{
		{"routes", "cluster", "cluster_name", "cluster_listen", "cluster_advertise", "no_advertise", "connect_retries"},
		{"s", "syslog", "r", "remote_syslog"}, {"ms", "https_port"},
	}
	for _, g := range groups {
		for _, n := range g {
			if n == name {
				return notHere[g[0]], true
			}
		}
	}
	return "", true
}

// lookup finds the option called name.
func lookup(name string) (*option, bool) {
	for i := range sections {
		for j := range sections[i].opts {
			o := &sections[i].opts[j]
			for _, n := range o.names {
				if n == name {
					return o, true
				}
			}
		}
	}
	return nil, false
}

// errUsage is a command-line error: exit 2 after one line.
var errUsage = errors.New("busbar: usage")

// parseFlags reads args: -name, --name, -name=value, --name value. Every
// error is one line naming the option.
func parseFlags(args []string) (*flags, error) {
	f := &flags{host: "127.0.0.1", port: 4222, httpPort: 8222, mqttPort: 1883, wsPort: 8080, logtime: true, set: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return nil, fmt.Errorf("%w: unexpected argument %q (see busbar -h)", errUsage, a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		o, ok := lookup(name)
		if !ok {
			if r, known := why(name); known {
				return nil, fmt.Errorf("%w: %s: not supported: %s", errUsage, a, r)
			}
			return nil, fmt.Errorf("%w: unknown option %s (see busbar -h)", errUsage, a)
		}
		if !hasVal {
			if o.arg == "" {
				val = "true"
			} else if i+1 < len(args) {
				i++
				val = args[i]
			} else {
				return nil, fmt.Errorf("%w: %s needs a %s", errUsage, a, o.arg)
			}
		}
		if err := o.apply(f, val); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errUsage, a, err)
		}
		f.set[o.names[0]] = true
	}
	if f.check && f.config == "" {
		return nil, fmt.Errorf("%w: -t checks a configuration file: give it with -c FILE", errUsage)
	}
	return f, nil
}

// usage writes -h: each option once, with its aliases.
func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: busbar [options]\n\nWith no options busbar runs the embedded default: NATS on 127.0.0.1:4222,\nMQTT on 127.0.0.1:1883, WebSocket on 127.0.0.1:8080, monitoring on\n127.0.0.1:8222, no authentication, in-memory store.\n")
	for _, s := range sections {
		fmt.Fprintf(w, "\n%s:\n", s.title)
		for _, o := range s.opts {
			names := make([]string, len(o.names))
			for i, n := range o.names {
				names[i] = "-" + n
				if len(n) > 2 {
					names[i] = "--" + n
				}
			}
			left := strings.Join(names, ", ")
			if o.arg != "" {
				left += " " + o.arg
			}
			fmt.Fprintf(w, "  %-34s %s\n", left, o.help)
		}
	}
}

// given reports whether any of the options (by first name) was given.
func (f *flags) given(names ...string) bool {
	for _, n := range names {
		if f.set[n] {
			return true
		}
	}
	return false
}

// loadConfig reads -c FILE (or takes the embedded default) and applies the
// flags given on the command line over it: flags override the file.
func loadConfig(f *flags) (*config.Config, error) {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return nil, err
		}
	}
	embeddedDefaults(f, cfg)
	if f.given("a") {
		cfg.NATS.Host = f.host
		if f.config == "" && cfg.MQTT != nil {
			cfg.MQTT.Host = f.host
		}
		if f.config == "" && cfg.WebSocket != nil {
			cfg.WebSocket.Host = f.host
		}
	}
	if f.given("p") {
		cfg.NATS.Port = f.port
	}
	if f.given("m") || f.config == "" {
		cfg.Monitor = config.HostPort{Host: cfg.NATS.Host, Port: f.httpPort}
	}
	storeFlags(f, cfg)
	serverFlags(f, cfg)
	switch {
	case f.token != "":
		cfg.Auth.Token, cfg.Auth.Users = f.token, nil
	case f.user != "":
		cfg.Auth.Users, cfg.Auth.Token = []auth.User{{Name: f.user, Password: f.pass}}, ""
	}
	logFlags(f, cfg)
	return cfg, nil
}

// embeddedDefaults adds MQTT and WebSocket listeners when there is no
// configuration file (the embedded default of the busbar command).
func embeddedDefaults(f *flags, cfg *config.Config) {
	if f.config == "" && cfg.MQTT == nil && f.mqttPort != 0 {
		cfg.MQTT = &config.MQTTOptions{Host: "127.0.0.1", Port: max(f.mqttPort, 0)}
	}
	if f.config == "" && cfg.WebSocket == nil && f.wsPort != 0 {
		cfg.WebSocket = &config.WebSocketOptions{
			Host: "127.0.0.1", Port: max(f.wsPort, 0), NoTLS: true,
			HandshakeTimeout: config.DefaultWSHandshake, MaxHandshakeBytes: config.DefaultMaxHandshake,
		}
	}
}

func storeFlags(f *flags, cfg *config.Config) {
	if f.jetstream || f.storeDir != "" {
		cfg.Store.Enabled = true
	}
	if f.storeDir != "" {
		cfg.Store.Dir = f.storeDir
	} else if cfg.Store.Enabled && cfg.Store.Dir == "" {
		cfg.Store.Dir = config.DefaultStoreDir()
	}
	cfg.Store.Repair = f.storeRepair
}

// serverFlags applies -n, -P, --client_advertise and the TLS options.
func serverFlags(f *flags, cfg *config.Config) {
	if f.given("n") {
		cfg.Broker.ServerName = f.name
	}
	if f.given("P") {
		cfg.PidFile = f.pidFile
	}
	if f.given("client_advertise") {
		cfg.NATS.ClientAdvertise = f.clientAdvertise
	}
	if f.tls || f.tlsVerify || f.given("tlscert", "tlskey", "tlscacert") {
		t := cfg.NATS.TLS
		if t == nil {
			t = &transport.TLSOptions{}
		}
		if f.given("tlscert") {
			t.CertFile = f.tlsCert
		}
		if f.given("tlskey") {
			t.KeyFile = f.tlsKey
		}
		if f.given("tlscacert") {
			t.CAFile = f.tlsCA
		}
		if f.tlsVerify {
			t.Verify = true
		}
		cfg.NATS.TLS = t
	}
}

func logFlags(f *flags, cfg *config.Config) {
	if f.given("D", "DV") {
		cfg.Log.Debug = f.debug
	}
	if f.given("V", "DV") {
		cfg.Log.Trace = f.trace
	}
	if f.given("T") {
		cfg.Log.Logtime = f.logtime
	}
	if f.logFile != "" {
		cfg.Log.File = f.logFile
	}
}
