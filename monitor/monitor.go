// Package monitor serves a broker's monitoring endpoints over HTTP:
// /healthz, /varz, /connz and /subsz in JSON with nats-server's field
// names where they exist, and /metrics in the Prometheus text format.
//
// A Server is an http.Handler a host application mounts on its own mux
// (under any prefix, with http.StripPrefix), and a broker.Service with its
// own optional listener (Listen, then Broker.Start):
//
//	mon := monitor.New(b, monitor.Options{})
//	mux.Handle("/monitor/", http.StripPrefix("/monitor", mon))
//
// Every response is built from snapshots the broker copies for it
// (broker.Snapshot, RouterStats, AuthFailures): nothing here runs on a
// publish path. Figures the broker does not keep (MQTT sessions, the
// durable store) come from the optional sources in Options, so the package
// imports only broker and auth and adds nothing to an embedder's
// dependency graph.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// Options configures a Server. The zero value serves the broker's own
// figures; the listener, when used, binds 127.0.0.1 on a free port.
type Options struct {
	// Host and Port are where Listen binds. Host default 127.0.0.1; Port 0
	// or -1: a free one. Unused when the host application mounts the
	// Server on its own mux.
	Host string
	Port int

	Logger *slog.Logger // nil: discard

	// MQTT reports the broker's MQTT sessions (mqtt.SessionStats); nil:
	// no MQTT figures.
	MQTT func() MQTTStats
	// Store reports the durable store (filestore.Store.Stats); nil: no
	// store figures.
	Store func() StoreStats
	// Leafz answers /leafz (leafnode.Service.Leafz); nil: no leaf node
	// remotes, an empty document as nats-server gives.
	Leafz func() any
	// Leafs reports each leaf node remote for /metrics; nil: none.
	Leafs func() []LeafRemote
	// Hub reports the MQTT state kept in a NATS hub's JetStream
	// (hub.Store.Stats); nil: MQTT state is local.
	Hub func() HubStats
	// Checks are further conditions /healthz requires (each err != nil
	// makes it 503 with the check's name).
	Checks []Check
	// Metrics, when set, builds the handler that answers /metrics instead
	// of the built-in text exposition: monitor/prom.Handler serves the
	// same figures through a Prometheus registry, with the Go and process
	// collectors.
	Metrics func(*Server) http.Handler

	// ReadHeaderTimeout bounds a request's header on the listener;
	// default 5s.
	ReadHeaderTimeout time.Duration
}

// MQTTStats are the MQTT figures of a broker.
type MQTTStats struct {
	Sessions  int   `json:"sessions"`  // sessions kept, connected or not
	Connected int   `json:"connected"` // sessions with a live connection
	Inflight  int   `json:"inflight"`  // QoS 1/2 messages sent and not yet acknowledged
	Queued    int   `json:"queued"`    // messages waiting for a session's in-flight window or its client
	Dropped   int64 `json:"dropped"`   // messages dropped for offline or over-limit sessions
	Denied    int64 `json:"denied"`    // queued or restored messages the session's identity may no longer receive
	Retained  int   `json:"retained"`  // retained messages
	// DroppedBy splits Dropped by reason (mqtt.Drop*: offline,
	// queue_messages, queue_bytes, offline_bytes, expired, too_large).
	DroppedBy    map[string]int64 `json:"dropped_by,omitempty"`
	QueuedBytes  int64            `json:"queued_bytes"`  // what sessions hold in QoS 1/2 messages
	OfflineBytes int64            `json:"offline_bytes"` // of which sessions without a connection
}

// HubStats are the figures of MQTT state kept in a hub's JetStream.
type HubStats struct {
	Domain      string        `json:"domain"`
	Ready       bool          `json:"ready"`
	LastError   string        `json:"last_error,omitempty"`
	RTT         time.Duration `json:"rtt"` // last round trip to the hub (ns in JSON)
	Writes      int64         `json:"writes"`
	WriteErrors int64         `json:"write_errors"`
	Claims      int64         `json:"claims"`    // client ids claimed here
	Takeovers   int64         `json:"takeovers"` // sessions another instance took from here
	Adopted     int64         `json:"adopted"`   // sessions taken from an instance that is gone
}

// StoreStats are the durable store's figures.
type StoreStats struct {
	Bytes       int64         `json:"bytes"`       // log size now
	Records     int64         `json:"records"`     // records written
	Commits     int64         `json:"commits"`     // fsyncs
	Compactions int64         `json:"compactions"` // log rewrites
	LastSync    time.Duration `json:"last_sync"`   // duration of the last fsync (ns in JSON)
}

// Check is one named health condition.
type Check struct {
	Name  string
	Check func() error
}

// Paths the Server answers, relative to where it is mounted.
const (
	HealthzPath = "/healthz"
	VarzPath    = "/varz"
	ConnzPath   = "/connz"
	SubszPath   = "/subsz"
	LeafzPath   = "/leafz"
	MetricsPath = "/metrics"
)

var paths = [...]string{"/", HealthzPath, VarzPath, ConnzPath, SubszPath, LeafzPath, MetricsPath}

// Server serves one broker's monitoring endpoints. Safe for concurrent
// use.
type Server struct {
	b    *broker.Broker
	opts Options
	log  *slog.Logger

	reqs    map[string]*atomic.Uint64 // requests by path; the map is fixed after New
	metrics http.Handler              // Options.Metrics's handler; nil: the built-in text

	mu   sync.Mutex // guards the fields below
	high map[string]broker.Totals
	ln   net.Listener
	srv  *http.Server
	done bool // Close was called
}

var _ broker.Service = (*Server)(nil)

// New returns the monitoring Server of b.
func New(b *broker.Broker, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 5 * time.Second
	}
	s := &Server{b: b, opts: o, log: o.Logger, reqs: make(map[string]*atomic.Uint64), high: make(map[string]broker.Totals)}
	for _, p := range paths {
		s.reqs[p] = new(atomic.Uint64)
	}
	if o.Metrics != nil {
		s.metrics = o.Metrics(s)
	}
	return s
}

// ServeHTTP routes a request to its endpoint. GET and HEAD only.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	c, ok := s.reqs[path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "monitor: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c.Add(1)
	switch path {
	case "/":
		s.handleRoot(w)
	case HealthzPath:
		s.handleHealthz(w)
	case VarzPath:
		s.handleVarz(w)
	case ConnzPath:
		s.handleConnz(w, r)
	case SubszPath:
		s.handleSubsz(w, r)
	case LeafzPath:
		s.handleLeafz(w)
	case MetricsPath:
		s.handleMetrics(w, r)
	}
}

func (s *Server) handleRoot(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, `<html><body><p>busbar monitoring</p>
<a href="varz">varz</a><br>
<a href="connz">connz</a><br>
<a href="subsz">subsz</a><br>
<a href="leafz">leafz</a><br>
<a href="healthz">healthz</a><br>
<a href="metrics">metrics</a>
</body></html>
`)
}

// requestStats copies the request counters (varz http_req_stats).
func (s *Server) requestStats() map[string]uint64 {
	out := make(map[string]uint64, len(s.reqs))
	for p, c := range s.reqs {
		out[p] = c.Load()
	}
	return out
}

// writeJSON answers v indented, as nats-server does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "monitor: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(buf, '\n'))
}

// badRequest answers a query it cannot use, in nats-server's way: 400 and
// one line.
func badRequest(w http.ResponseWriter, msg string) {
	http.Error(w, msg, http.StatusBadRequest)
}

// Name is "monitor".
func (s *Server) Name() string { return "monitor" }

// Listen binds Options.Host:Port now, so an address error surfaces before
// the broker starts: "monitor: listen 127.0.0.1:8222: address already in
// use".
func (s *Server) Listen() error {
	addr := net.JoinHostPort(s.opts.Host, strconv.Itoa(max(s.opts.Port, 0)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
			var se interface{ Unwrap() error }
			if errors.As(err, &se) && se.Unwrap() != nil {
				err = se.Unwrap()
			}
		}
		return fmt.Errorf("monitor: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		_ = ln.Close()
		return ErrClosed
	}
	s.ln = ln
	return nil
}

// Addr is the bound address once Listen returned (port 0 resolved), nil
// before.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve answers requests on the listener until Close; it returns nil
// then. b is the broker the Server was made for (broker.Service).
func (s *Server) Serve(ctx context.Context, _ *broker.Broker) error {
	s.mu.Lock()
	ln := s.ln
	if s.done {
		s.mu.Unlock()
		return nil
	}
	if ln == nil {
		s.mu.Unlock()
		return ErrNotListening
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	srv := s.srv
	s.mu.Unlock()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("monitor: serve: %w", err)
	}
	return nil
}

// Close stops the listener and ends open requests. Safe to call more than
// once, before or after Serve.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	if s.srv != nil {
		err := s.srv.Close() // closes ln too, once Serve has it
		_ = s.ln.Close()     // in case Serve had not yet
		return err
	}
	if s.ln != nil {
		return s.ln.Close()
	}
	return nil
}

// slogWriter sends net/http's server errors (bad TLS, accept errors) to
// the logger at debug level: they are the peer's doing.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.l.Debug("monitor: " + msg)
	return len(p), nil
}

// KeepInLameDuck keeps monitoring up in lame duck mode, as nats-server
// does (broker.LameDuckKeeper): the drain stays observable until
// Shutdown closes it.
func (s *Server) KeepInLameDuck() bool { return true }
