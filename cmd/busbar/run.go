package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/monitor/prom"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/store/filestore"
	"github.com/busbar/busbar/transport"
)

// flags are nats-server's command-line options that busbar implements.
type flags struct {
	host, user, pass, token, logFile, config string
	port, httpPort, mqttPort, wsPort         int
	debug, trace, debugTrace, version, check bool
	storeRepair, jetstream                   bool
	storeDir                                 string
	signal                                   string          // --signal/-sl CMD=PID; --ldm PID is ldm=PID
	set                                      map[string]bool // flags given on the command line
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("busbar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.host, "a", "127.0.0.1", "bind to `HOST` (alias --addr, --net)")
	fs.StringVar(&f.host, "addr", "127.0.0.1", "bind to `HOST`")
	fs.StringVar(&f.host, "net", "127.0.0.1", "bind to `HOST`")
	fs.IntVar(&f.port, "p", 4222, "NATS client `PORT` (alias --port)")
	fs.IntVar(&f.port, "port", 4222, "NATS client `PORT`")
	fs.IntVar(&f.httpPort, "m", 8222, "monitoring `PORT` (alias --http_port)")
	fs.IntVar(&f.httpPort, "http_port", 8222, "monitoring `PORT`")
	fs.IntVar(&f.wsPort, "ws_port", 8080, "(busbar) WebSocket `PORT` (no TLS) when no config file gives a websocket {} block; -1: a free port, 0: no WebSocket")
	fs.IntVar(&f.mqttPort, "mqtt_port", 1883, "(busbar) MQTT `PORT` when no config file gives an mqtt {} block; -1: a free port, 0: no MQTT")
	fs.StringVar(&f.user, "user", "", "`USER` required for connections")
	fs.StringVar(&f.pass, "pass", "", "`PASSWORD` required for connections")
	fs.StringVar(&f.token, "auth", "", "authorization `TOKEN` required for connections")
	fs.BoolVar(&f.jetstream, "js", false, "enable busbar's durable store (nats-server's --jetstream; alias --jetstream)")
	fs.BoolVar(&f.jetstream, "jetstream", false, "enable busbar's durable store")
	fs.StringVar(&f.storeDir, "sd", "", "durable store `DIR` (alias --store_dir; implies --js)")
	fs.StringVar(&f.storeDir, "store_dir", "", "durable store `DIR`")
	fs.BoolVar(&f.storeRepair, "store_repair", false, "(busbar) open a corrupt store by cutting its log at the first bad record")
	fs.BoolVar(&f.debug, "D", false, "debug logging")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.trace, "V", false, "trace logging")
	fs.BoolVar(&f.trace, "trace", false, "trace logging")
	fs.BoolVar(&f.debugTrace, "DV", false, "debug and trace logging")
	fs.StringVar(&f.logFile, "l", "", "log to `FILE` instead of stderr (alias --log)")
	fs.StringVar(&f.logFile, "log", "", "log to `FILE`")
	fs.StringVar(&f.config, "c", "", "configuration `FILE` (alias --config)")
	fs.StringVar(&f.config, "config", "", "configuration `FILE`")
	fs.BoolVar(&f.check, "t", false, "check the configuration file and exit")
	fs.Func("ldm", "put the busbar with `PID` (a number, or a pid file) in lame duck mode (SIGUSR2) and exit", func(v string) error {
		f.signal = "ldm=" + v
		return nil
	})
	fs.StringVar(&f.signal, "signal", "", "send `CMD=PID` to a running busbar and exit: ldm, reload, quit, term, stop (PID: a number or a pid file; alias -sl)")
	fs.StringVar(&f.signal, "sl", "", "send `CMD=PID` to a running busbar and exit")
	fs.BoolVar(&f.version, "v", false, "print the version and exit (alias --version)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: busbar [options]\n\nWith no options busbar runs the embedded default: NATS on 127.0.0.1:4222,\nno authentication, in-memory store.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.set = make(map[string]bool)
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("busbar: unexpected argument %q (see busbar -h)", fs.Arg(0))
	}
	if f.debugTrace {
		f.debug, f.trace = true, true
	}
	if f.check && f.config == "" {
		return nil, fmt.Errorf("busbar: -t checks a configuration file: give it with -c FILE")
	}
	return f, nil
}

// given reports whether any of the names was on the command line.
func (f *flags) given(names ...string) bool {
	for _, n := range names {
		if f.set[n] {
			return true
		}
	}
	return false
}

// levelTrace is below slog.LevelDebug: protocol traces (-V, trace: true).
const levelTrace = slog.Level(-8)

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
	if f.config == "" && cfg.MQTT == nil && f.mqttPort != 0 { // the embedded default of SPEC.md
		cfg.MQTT = &config.MQTTOptions{Host: "127.0.0.1", Port: max(f.mqttPort, 0)}
	}
	if f.config == "" && cfg.WebSocket == nil && f.wsPort != 0 {
		cfg.WebSocket = &config.WebSocketOptions{
			Host: "127.0.0.1", Port: max(f.wsPort, 0), NoTLS: true,
			HandshakeTimeout: config.DefaultWSHandshake, MaxHandshakeBytes: config.DefaultMaxHandshake,
		}
	}
	if f.given("a", "addr", "net") {
		cfg.NATS.Host = f.host
		if f.config == "" && cfg.MQTT != nil {
			cfg.MQTT.Host = f.host
		}
		if f.config == "" && cfg.WebSocket != nil {
			cfg.WebSocket.Host = f.host
		}
	}
	if f.jetstream || f.storeDir != "" {
		cfg.Store.Enabled = true
	}
	if f.storeDir != "" {
		cfg.Store.Dir = f.storeDir
	} else if cfg.Store.Enabled && cfg.Store.Dir == "" {
		cfg.Store.Dir = config.DefaultStoreDir()
	}
	cfg.Store.Repair = f.storeRepair
	if f.given("p", "port") {
		cfg.NATS.Port = f.port
	}
	if f.given("m", "http_port") {
		cfg.Monitor = config.HostPort{Host: cfg.NATS.Host, Port: f.httpPort}
	} else if f.config == "" {
		cfg.Monitor = config.HostPort{Host: cfg.NATS.Host, Port: f.httpPort}
	}
	switch {
	case f.token != "":
		cfg.Auth.Token, cfg.Auth.Users = f.token, nil
	case f.user != "":
		cfg.Auth.Users, cfg.Auth.Token = []auth.User{{Name: f.user, Password: f.pass}}, ""
	}
	if f.given("D", "debug", "DV") {
		cfg.Log.Debug = f.debug
	}
	if f.given("V", "trace", "DV") {
		cfg.Log.Trace = f.trace
	}
	if f.logFile != "" {
		cfg.Log.File = f.logFile
	}
	return cfg, nil
}

// printErrors writes each positioned error on its own line.
func printErrors(w io.Writer, err error) {
	if es := config.AsErrors(err); es != nil {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func logLevel(l config.LogOptions) slog.Level {
	switch {
	case l.Trace:
		return levelTrace
	case l.Debug:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func newLogger(cfg *config.Config, level *slog.LevelVar, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	w, closer := stderr, io.Closer(nil)
	if cfg.Log.File != "" {
		lf, err := os.OpenFile(cfg.Log.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("busbar: log file: %w", err)
		}
		w, closer = lf, lf
	}
	level.Set(logLevel(cfg.Log))
	ho := &slog.HandlerOptions{Level: level}
	if !cfg.Log.Logtime {
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho)), closer, nil
	}
	return slog.New(slog.NewTextHandler(w, ho)), closer, nil
}

// run is main without os.Exit, so tests drive it. stop, when not nil,
// replaces the signal channel (SIGHUP on it reloads).
func run(args []string, stdout, stderr io.Writer, stop <-chan os.Signal) int {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if f.version {
		fmt.Fprintf(stdout, "busbar v%s (%s)\n", broker.Version, broker.GoVersion())
		return 0
	}
	if f.signal != "" {
		if err := sendSignal(f.signal); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	cfg, err := loadConfig(f)
	if err == nil && f.check {
		err = cfg.Check()
	}
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	if f.check {
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, w.String())
		}
		fmt.Fprintf(stdout, "busbar: configuration file %s is valid\n", f.config)
		return 0
	}
	level := new(slog.LevelVar)
	log, closer, err := newLogger(cfg, level, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if closer != nil {
		defer closer.Close()
	}
	s := &server{flags: f, cfg: cfg, log: log, level: level}
	if err := s.serve(stop); err != nil {
		if es := config.AsErrors(err); es != nil {
			for _, e := range es {
				log.Error("busbar stopped", "err", e.Error())
			}
			return 1
		}
		log.Error("busbar stopped", "err", err)
		return 1
	}
	return 0
}

// server is the running command: the broker and the configuration it
// was built from.
type server struct {
	flags *flags
	log   *slog.Logger
	level *slog.LevelVar
	b     *broker.Broker

	mu  sync.Mutex // guards cfg (reloads)
	cfg *config.Config
}

func (s *server) serve(stop <-chan os.Signal) error {
	cfg := s.cfg
	for _, w := range cfg.Warnings {
		s.log.Warn("configuration: " + w.String())
	}
	for _, n := range cfg.Notices {
		s.log.Info("configuration: " + n.Msg)
	}
	opts, err := cfg.BrokerOptions(s.log)
	if err != nil {
		return err
	}
	// The durable store is replayed here, before any listener accepts.
	st, err := cfg.OpenStore(s.log)
	if err != nil {
		return err
	}
	if st != nil {
		opts.Store = st
		defer func() {
			if err := st.Close(); err != nil {
				s.log.Error("store: close", "err", err)
			}
		}()
	}
	if s.b, err = broker.New(opts); err != nil {
		return err
	}
	svcs, err := cfg.Transports()
	if err != nil {
		return err
	}
	leaf, err := cfg.LeafnodeService(s.log) // leafnodes { remotes }: nil without
	if err != nil {
		return err
	}
	started := make([]broker.Service, 0, len(svcs))
	for _, t := range svcs {
		if err := t.Listen(); err != nil {
			for _, st := range started {
				_ = st.Close()
			}
			return err
		}
		started = append(started, t)
	}
	mon, err := s.monitor(st, svcs, leaf)
	if err != nil {
		for _, st := range started {
			_ = st.Close()
		}
		return err
	}
	if err := s.b.Start(started...); err != nil {
		return err
	}
	if leaf != nil {
		if err := s.b.Start(leaf); err != nil {
			return err
		}
	}
	if mon != nil {
		// Started last: the MQTT listener's Serve sets up the MQTT state
		// the monitor's MQTT figures read, and mqtt.SessionStats called
		// before it would set that state up with default options.
		if err := s.b.Start(mon); err != nil {
			return err
		}
	}
	s.logReady(svcs, mon)
	if stop == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
		defer signal.Stop(ch)
		stop = ch
	}
	return s.waitSignals(stop)
}

// waitSignals handles signals until the broker is to stop: SIGHUP
// reloads, SIGUSR2 starts lame duck mode (which ends in a shutdown),
// SIGINT/SIGTERM shut down; during lame duck mode they close the
// remaining clients at once instead of waiting.
func (s *server) waitSignals(stop <-chan os.Signal) error {
	var (
		ldDone   chan error
		ldCancel context.CancelFunc
	)
	for {
		select {
		case err := <-ldDone:
			return err
		case sig, ok := <-stop:
			switch {
			case ok && sig == syscall.SIGHUP:
				_ = s.reload()
				continue
			case ok && sig == syscall.SIGUSR2:
				if ldDone != nil {
					s.log.Info("already in lame duck mode")
					continue
				}
				var ctx context.Context
				ctx, ldCancel = context.WithCancel(context.Background())
				defer ldCancel()
				ldDone = make(chan error, 1)
				go func() { ldDone <- s.b.LameDuck(ctx) }()
				continue
			case ldDone != nil:
				s.log.Info("shutting down: closing the lame duck's remaining clients now", "signal", fmt.Sprint(sig))
				ldCancel()
				return <-ldDone
			}
			s.log.Info("shutting down", "signal", fmt.Sprint(sig))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return s.b.Shutdown(ctx)
		}
	}
}

// sendSignal is --signal CMD=PID (nats-server's -sl) and --ldm PID: it
// signals a running busbar. PID is a process id or a file holding one.
func sendSignal(arg string) error {
	cmd, target, ok := strings.Cut(arg, "=")
	if !ok || target == "" {
		return fmt.Errorf("busbar: --signal %q: want CMD=PID (busbar finds no process by name; give its pid or pid file)", arg)
	}
	sigs := map[string]syscall.Signal{
		"ldm": syscall.SIGUSR2, "reload": syscall.SIGHUP, "quit": syscall.SIGINT,
		"term": syscall.SIGTERM, "stop": syscall.SIGKILL,
	}
	sig, ok := sigs[strings.ToLower(cmd)]
	if !ok {
		return fmt.Errorf("busbar: --signal: unknown command %q (ldm, reload, quit, term, stop)", cmd)
	}
	pid, err := strconv.Atoi(target)
	if err != nil {
		data, rerr := os.ReadFile(target)
		if rerr != nil {
			return fmt.Errorf("busbar: --signal %s: %q is neither a pid nor a readable pid file: %w", cmd, target, rerr)
		}
		if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
			return fmt.Errorf("busbar: --signal %s: pid file %s holds no pid", cmd, target)
		}
	}
	if pid <= 0 {
		return fmt.Errorf("busbar: --signal %s: invalid pid %d", cmd, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("busbar: --signal %s to pid %d: %w", cmd, pid, err)
	}
	return nil
}

// monitor builds the monitoring listener (-m, http_port) and binds it;
// nil when monitoring is off. Port -1 picks a free port.
func (s *server) monitor(st *filestore.Store, svcs []transport.Transport, leaf *leafnode.Service) (*monitor.Server, error) {
	hp := s.cfg.Monitor
	if hp.Port == 0 {
		return nil, nil
	}
	o := monitor.Options{Host: hp.Host, Port: max(hp.Port, 0), Logger: s.log, Metrics: prom.Handler}
	for _, t := range svcs {
		if t.Name() == "mqtt" {
			// Only with an MQTT listener: SessionStats would otherwise set
			// up the broker's MQTT state with default options before the
			// WebSocket listener's MQTT does.
			o.MQTT = func() monitor.MQTTStats {
				m := mqtt.SessionStats(s.b)
				return monitor.MQTTStats{Sessions: m.Sessions, Connected: m.Connected, Inflight: m.Inflight,
					Queued: m.Queued, Dropped: m.Dropped, Denied: m.Denied, Retained: m.Retained,
					DroppedBy: m.DroppedBy, QueuedBytes: m.QueuedBytes, OfflineBytes: m.OfflineBytes}
			}
			break
		}
	}
	if st != nil {
		o.Store = func() monitor.StoreStats {
			f := st.Stats()
			return monitor.StoreStats{Bytes: f.Bytes, Records: f.Records, Commits: f.Commits, Compactions: f.Compacted, LastSync: f.LastSync}
		}
	}
	if leaf != nil {
		o.Leafz = func() any { return leaf.Leafz() }
		o.Leafs = func() []monitor.LeafRemote { return leafRemotes(leaf.Stats()) }
	}
	mon := monitor.New(s.b, o)
	if err := mon.Listen(); err != nil {
		return nil, err
	}
	return mon, nil
}

// logReady says in one line what runs where.
func (s *server) logReady(svcs []transport.Transport, mon *monitor.Server) {
	cfg := s.cfg
	attrs := []any{"version", broker.Version}
	for _, t := range svcs {
		attrs = append(attrs, t.Name(), t.Addr().String())
	}
	if mon != nil {
		attrs = append(attrs, mon.Name(), mon.Addr().String())
	}
	storeKind := "memory"
	if cfg.Store.Enabled {
		storeKind = "file " + cfg.Store.Dir
	}
	attrs = append(attrs, "auth", authMode(cfg), "store", storeKind)
	if cfg.File != "" {
		attrs = append(attrs, "config", cfg.File)
	}
	if cfg.Leafnodes != nil && len(cfg.Leafnodes.Remotes) > 0 {
		attrs = append(attrs, "leafnode_remotes", len(cfg.Leafnodes.Remotes))
	}
	s.log.Info("busbar ready", attrs...)
}

// reload re-reads the configuration file (SIGHUP): users, passwords,
// tokens, permissions, limits and the log level apply without a restart.
// A file with errors is refused whole and each error is logged with its
// position; the running configuration stays.
func (s *server) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flags.config == "" {
		s.log.Warn("reload: busbar runs without a configuration file (-c); nothing to reload")
		return errors.New("busbar: no configuration file")
	}
	next, err := loadConfig(s.flags)
	if err == nil {
		err = config.Reload(s.b, s.cfg, next, s.log)
	}
	if err != nil {
		if es := config.AsErrors(err); es != nil {
			for _, e := range es {
				s.log.Error("reload failed: running configuration kept", "err", e.Error())
			}
		} else {
			s.log.Error("reload failed: running configuration kept", "err", err)
		}
		return err
	}
	s.cfg = next
	s.level.Set(logLevel(next.Log))
	for _, w := range next.Warnings {
		s.log.Warn("configuration: " + w.String())
	}
	s.log.Info("reloaded", "config", s.flags.config, "auth", authMode(next))
	return nil
}

func authMode(cfg *config.Config) string {
	a := &cfg.Auth
	switch {
	case len(a.Operators) > 0:
		return "operator"
	case a.Token != "" && len(a.Users) > 0:
		return "token, users"
	case a.Token != "":
		return "token"
	case len(a.Users) == 1 && a.Users[0].Password != "" && a.Users[0].NKey == "":
		return "user/password"
	case len(a.Users) > 0:
		return fmt.Sprintf("%d users", len(a.Users))
	case a.ExternalJWT != nil:
		return "jwt"
	}
	return "none"
}

// leafRemotes converts the leaf node figures for monitoring.
func leafRemotes(rs []leafnode.RemoteStats) []monitor.LeafRemote {
	out := make([]monitor.LeafRemote, len(rs))
	for i, r := range rs {
		out[i] = monitor.LeafRemote{Account: r.Account, Up: r.Up, Reconnects: r.Reconnects,
			InMsgs: r.InMsgs, InBytes: r.InBytes, OutMsgs: r.OutMsgs, OutBytes: r.OutBytes}
	}
	return out
}
