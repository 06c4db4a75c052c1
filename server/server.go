// Package server turns a loaded configuration into a running broker with
// every service the configuration names, in one call: the NATS listener,
// the mqtt {} and websocket {} listeners, leaf node links, the durable
// store, monitoring (http_port, with MQTT, store and leaf node figures and
// a Prometheus /metrics), the system account and the pid file. It is
// what the busbar command runs, so an embedder gets exactly what the
// binary does (and the MQTT state in a hub's JetStream with mqtt {
// js_domain }):
//
//	cfg, err := config.Load("busbar.conf")
//	s, err := server.Start(cfg, server.Options{Logger: logger, Authenticator: appAuth})
//	defer s.Shutdown(ctx)
//	mux.Handle("/ws", s.WebSocketHandler())      // also "/ws/mqtt"
//	mux.Handle("/monitor/", http.StripPrefix("/monitor", s.Monitor()))
//
// It links the Prometheus client library (monitor/prom); an embedder who
// builds the broker from the config package's parts does not.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/hub"
	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/monitor/prom"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/store/filestore"
	"github.com/busbar/busbar/transport"
	"github.com/busbar/busbar/websocket"
)

// Options are what Start needs besides the configuration. The zero value
// works.
type Options struct {
	// Logger receives the broker's and every service's lines; nil
	// discards them.
	Logger *slog.Logger
	// Authenticator is the host application's own: it is asked first, and
	// the users, tokens and keys the configuration declares after it
	// (auth.Chain). It stays in front across Reload.
	Authenticator auth.Authenticator
}

// Server is a broker started from a configuration, with its services.
type Server struct {
	opts  Options
	log   *slog.Logger
	b     *broker.Broker
	store *filestore.Store // jetstream { store_dir }; nil: in memory

	nats *natsproto.Transport
	mqtt *mqtt.Transport      // nil without mqtt {}
	ws   *websocket.Transport // nil without websocket {}
	ts   []transport.Transport
	leaf *leafnode.Service // nil without leafnodes { remotes }
	hub  *hub.Store        // mqtt { js_domain }: the MQTT state in the hub; nil without
	mon  *monitor.Server   // always made; listening when monitorOn
	sys  *monitor.System   // nil with no_system_account

	monitorOn bool
	pidFile   string // written at Start, removed at the end

	wsOnce sync.Once
	wsh    *websocket.Transport // WebSocketHandler's
	wsErr  error

	mu  sync.Mutex // guards cfg and ended
	cfg *config.Config
	end bool
}

// Start builds the broker cfg describes, opens its store, binds every
// listener (an address in use fails Start, naming the listener) and runs
// every service. On an error nothing keeps running. The caller ends it
// with Shutdown (or LameDuck).
func Start(cfg *config.Config, o Options) (*Server, error) {
	s := &Server{opts: o, log: o.Logger, cfg: cfg}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	bo, err := s.brokerOptions(cfg)
	if err != nil {
		return nil, err
	}
	// mqtt { js_domain }: the MQTT state lives in the hub's JetStream.
	if s.hub, err = cfg.HubStore(s.log); err != nil {
		return nil, err
	}
	// The durable store is replayed here, before any listener accepts.
	if s.store, err = cfg.OpenStore(s.log); err != nil {
		return nil, err
	}
	switch {
	case s.hub != nil:
		bo.Store = s.hub
	case s.store != nil:
		bo.Store = s.store
	}
	if s.b, err = broker.New(bo); err != nil {
		s.closeStore()
		return nil, err
	}
	if err := s.build(cfg); err != nil {
		s.abort()
		return nil, err
	}
	if err := s.run(); err != nil {
		s.abort()
		return nil, err
	}
	if err := s.writePidFile(cfg.PidFile); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// brokerOptions are cfg's broker options with the host's Authenticator
// chained in front of the configured ones (cfg is not changed).
func (s *Server) brokerOptions(cfg *config.Config) (broker.Options, error) {
	bo, err := cfg.BrokerOptions(s.log)
	if err != nil {
		return bo, err
	}
	if s.opts.Authenticator != nil {
		bo.Authenticator = auth.Chain(s.opts.Authenticator, bo.Authenticator)
	}
	return bo, nil
}

// build makes every service (nothing listens yet).
func (s *Server) build(cfg *config.Config) error {
	ts, err := cfg.Transports()
	if err != nil {
		return err
	}
	s.ts = ts
	for _, t := range ts {
		switch t := t.(type) {
		case *natsproto.Transport:
			s.nats = t
		case *mqtt.Transport:
			s.mqtt = t
		case *websocket.Transport:
			s.ws = t
		}
	}
	if s.leaf, err = cfg.LeafnodeService(s.log); err != nil {
		return err
	}
	s.monitorOn = cfg.Monitor.Port != 0
	s.mon = monitor.New(s.b, s.monitorOptions(cfg))
	if name := cfg.SystemAccountName(); name != "" {
		s.sys = monitor.NewSystem(s.mon, name)
	}
	return nil
}

// monitorOptions wires the figures the broker does not keep: MQTT
// sessions, the store, the leaf node links; /metrics through Prometheus.
func (s *Server) monitorOptions(cfg *config.Config) monitor.Options {
	o := monitor.Options{Logger: s.log, Metrics: prom.Handler}
	if s.monitorOn {
		o.Host, o.Port = cfg.Monitor.Host, max(cfg.Monitor.Port, 0) // -1: a free port
	}
	if s.mqtt != nil {
		o.MQTT = func() monitor.MQTTStats { return mqttFigures(mqtt.SessionStats(s.b)) }
	}
	if st := s.store; st != nil {
		o.Store = func() monitor.StoreStats {
			f := st.Stats()
			return monitor.StoreStats{Bytes: f.Bytes, Records: f.Records, Commits: f.Commits, Compactions: f.Compacted, LastSync: f.LastSync}
		}
	}
	if h := s.hub; h != nil {
		o.Hub = func() monitor.HubStats {
			st := h.Stats()
			return monitor.HubStats{Domain: st.Domain, Ready: st.Ready, LastError: st.LastError, RTT: st.RTT,
				Writes: st.Writes, WriteErrors: st.WriteFails, Claims: st.Claims, Takeovers: st.Takeovers, Adopted: st.Adopted}
		}
	}
	if l := s.leaf; l != nil {
		o.Leafz = func() any { return l.Leafz() }
		o.Leafs = func() []monitor.LeafRemote { return leafFigures(l.Stats()) }
	}
	return o
}

// mqttFigures converts the MQTT figures for monitoring.
func mqttFigures(m mqtt.Stats) monitor.MQTTStats {
	return monitor.MQTTStats{Sessions: m.Sessions, Connected: m.Connected, Inflight: m.Inflight,
		Queued: m.Queued, Dropped: m.Dropped, Denied: m.Denied, Retained: m.Retained,
		DroppedBy: m.DroppedBy, QueuedBytes: m.QueuedBytes, OfflineBytes: m.OfflineBytes}
}

// leafFigures converts the leaf node figures for monitoring.
func leafFigures(rs []leafnode.RemoteStats) []monitor.LeafRemote {
	out := make([]monitor.LeafRemote, len(rs))
	for i, r := range rs {
		out[i] = monitor.LeafRemote{Account: r.Account, Up: r.Up, Reconnects: r.Reconnects,
			InMsgs: r.InMsgs, InBytes: r.InBytes, OutMsgs: r.OutMsgs, OutBytes: r.OutBytes}
	}
	return out
}

// run binds and starts the services: the listeners first (their Serve
// sets up the MQTT state the monitor's figures read), then the leaf node
// links, the system account and monitoring.
func (s *Server) run() error {
	svcs := make([]broker.Service, 0, len(s.ts))
	for _, t := range s.ts {
		svcs = append(svcs, t)
	}
	if s.monitorOn {
		if err := s.mon.Listen(); err != nil { // before anything runs
			return err
		}
	}
	if err := s.b.Start(svcs...); err != nil {
		return err
	}
	var rest []broker.Service
	if s.leaf != nil {
		rest = append(rest, s.leaf)
	}
	if s.hub != nil { // through the leaf node link
		rest = append(rest, s.hub)
	}
	if s.sys != nil {
		rest = append(rest, s.sys)
	}
	if s.monitorOn {
		rest = append(rest, s.mon)
	}
	if err := s.b.Start(rest...); err != nil {
		return err
	}
	if s.sys != nil { // answering when Start returns
		select {
		case <-s.sys.Ready():
		case <-s.b.Context().Done():
		}
	}
	return nil
}

// abort undoes a Start that failed half way.
func (s *Server) abort() {
	_ = s.mon.Close()
	_ = s.b.Shutdown(context.Background())
	s.closeStore()
}

func (s *Server) closeStore() {
	if s.store == nil {
		return
	}
	if err := s.store.Close(); err != nil {
		s.log.Error("store: close", "err", err)
	}
}

func (s *Server) writePidFile(path string) error {
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("server: pid_file: %w", err)
	}
	s.pidFile = path
	return nil
}

// Broker is the running broker (in-process clients: Broker().Local).
func (s *Server) Broker() *broker.Broker { return s.b }

// Config is the configuration in effect (the last one Reload applied).
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Monitor is the monitoring handler, for the host's own mux (under any
// prefix, with http.StripPrefix); it also listens on http_port when the
// configuration sets one.
func (s *Server) Monitor() *monitor.Server { return s.mon }

// NATS, MQTT and WebSocket are the listeners; MQTT and WebSocket are nil
// without their block.
func (s *Server) NATS() *natsproto.Transport        { return s.nats }
func (s *Server) MQTT() *mqtt.Transport             { return s.mqtt }
func (s *Server) WebSocket() *websocket.Transport   { return s.ws }
func (s *Server) Leafnode() *leafnode.Service       { return s.leaf }
func (s *Server) SystemAccount() *monitor.System    { return s.sys }
func (s *Server) Store() *filestore.Store           { return s.store }
func (s *Server) Transports() []transport.Transport { return s.ts }

// WebSocketHandler serves NATS and MQTT over WebSocket on the host's own
// mux, with the websocket {} block's settings (handshake authentication,
// origins), or the defaults without one. Mount it on both paths clients
// use: mux.Handle("/ws", h) and mux.Handle("/ws/mqtt", h).
func (s *Server) WebSocketHandler() http.Handler {
	s.wsOnce.Do(func() {
		s.wsh = s.ws
		if s.wsh == nil {
			o := websocket.Options{NATS: s.nats}
			if s.mqtt != nil {
				o.MQTT = s.mqtt
			}
			s.wsh, s.wsErr = websocket.New(o)
		}
	})
	if s.wsErr != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "busbar: "+s.wsErr.Error(), http.StatusInternalServerError)
		})
	}
	return s.wsh.Handler(s.b)
}

// Listener is one bound service.
type Listener struct {
	Name string // nats, mqtt, websocket, monitor
	Addr net.Addr
}

// Listeners are the bound services, in start order.
func (s *Server) Listeners() []Listener {
	var out []Listener
	for _, t := range s.ts {
		out = append(out, Listener{t.Name(), t.Addr()})
	}
	if s.monitorOn {
		out = append(out, Listener{s.mon.Name(), s.mon.Addr()})
	}
	return out
}

// Reload applies next to the running broker (users, passwords, tokens,
// permissions, limits; the host's Authenticator stays in front), or
// refuses it whole with FILE:LINE:COL errors (config.Reload). next's
// Broker.Authenticator is set to the chain it applied.
func (s *Server) Reload(next *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Authenticator != nil {
		base := next.Broker.Authenticator
		if base == nil {
			var err error
			if base, err = next.Authenticator(s.log); err != nil {
				return err
			}
		}
		next.Broker.Authenticator = auth.Chain(s.opts.Authenticator, base)
	}
	if err := config.Reload(s.b, s.cfg, next, s.log); err != nil {
		return err
	}
	s.cfg = next
	return nil
}

// Shutdown stops the broker (stop accepting, close every client after it
// flushed, persist), then closes the store and removes the pid file. A
// second call returns broker.ErrClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.b.Shutdown(ctx)
	if errors.Is(err, broker.ErrClosed) {
		return err
	}
	s.finish()
	return err
}

// LameDuck drains the broker as nats-server does (broker.LameDuck) and
// ends like Shutdown. Cancelling ctx closes the remaining clients at once.
func (s *Server) LameDuck(ctx context.Context) error {
	err := s.b.LameDuck(ctx)
	s.finish()
	return err
}

// finish closes what outlives the broker, once.
func (s *Server) finish() {
	s.mu.Lock()
	done := s.end
	s.end = true
	s.mu.Unlock()
	if done {
		return
	}
	s.closeStore()
	if s.pidFile != "" {
		_ = os.Remove(s.pidFile)
	}
}
