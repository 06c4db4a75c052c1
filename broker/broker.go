// Package broker is busbar's core: the router (subject trie plus match
// cache), sessions, permission checks, slow-consumer policy and the
// in-process client API. It knows nothing of sockets or wire formats;
// transports (natsproto, mqtt, websocket) register connections with it
// through Connect and hand it messages through Session.Publish.
//
// New builds a Broker from Options; a zero Options gives a usable
// in-memory broker with nats-server's defaults. Local (and LocalAs, with
// an identity) returns an in-process client that publishes, subscribes and
// makes requests with no socket. Start runs transports (any Service) on
// goroutines the broker tracks; Reload swaps options on a running broker;
// Shutdown stops accepting, closes every client after it flushed, runs the
// OnShutdown hooks and waits. Several brokers can run side by side in one
// process: the package keeps no running state of its own.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/store"
)

// Version is busbar's version, reported in NATS INFO and by -v.
const Version = "0.1.0"

// Defaults, as nats-server has them.
const (
	DefaultMaxPayload     = 1 << 20
	DefaultMaxControlLine = 4096
	DefaultMaxPending     = 64 << 20
	DefaultMaxConnections = 64 * 1024
	DefaultPingInterval   = 2 * time.Minute
	DefaultPingMax        = 2
	DefaultWriteDeadline  = 10 * time.Second
	DefaultAuthTimeout    = 2 * time.Second

	DefaultLameDuckDuration    = 2 * time.Minute
	DefaultLameDuckGracePeriod = 10 * time.Second
)

// Options configures a Broker. The zero value is usable: every zero field
// takes the nats-server default named beside it.
type Options struct {
	ServerName string       // default: the generated server id
	Logger     *slog.Logger // nil: discard

	MaxPayload       int           // bytes of headers+payload; default 1 MiB
	MaxControlLine   int           // default 4096
	MaxPending       int64         // per connection outbound bytes; default 64 MiB
	MaxConnections   int           // default 65536; negative: no limit
	MaxSubscriptions int           // per connection; 0: no limit
	PingInterval     time.Duration // default 2m
	PingMax          int           // unanswered pings before 'Stale Connection'; default 2
	WriteDeadline    time.Duration // default 10s
	AuthTimeout      time.Duration // default 2s
	MaxClosedClients int           // closed connections kept for monitoring; default 10000; negative: none

	// LameDuckDuration is how long LameDuck may take, from entering lame
	// duck mode to the last client closed; default 2m (lameduck.go).
	LameDuckDuration time.Duration
	// LameDuckGracePeriod is how long LameDuck waits before it closes the
	// first client; default 10s, or half the duration when that is under
	// 20s; negative: no wait. It must be shorter than the duration.
	LameDuckGracePeriod time.Duration

	// Store keeps sessions, in-flight messages and retained messages.
	// nil: store.NewMemory().
	Store store.Store

	// Authenticator decides who connects. nil: no authentication, every
	// connection is anonymous with full permissions.
	Authenticator auth.Authenticator

	// Accounts declares exports and imports between accounts (account.go).
	// Every account is its own subject space whether declared or not.
	Accounts []Account
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Store == nil {
		o.Store = store.NewMemory()
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxControlLine == 0 {
		o.MaxControlLine = DefaultMaxControlLine
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PingMax == 0 {
		o.PingMax = DefaultPingMax
	}
	if o.WriteDeadline == 0 {
		o.WriteDeadline = DefaultWriteDeadline
	}
	if o.AuthTimeout == 0 {
		o.AuthTimeout = DefaultAuthTimeout
	}
	if o.MaxClosedClients == 0 {
		o.MaxClosedClients = DefaultMaxClosedClients
	}
	if o.LameDuckDuration == 0 {
		o.LameDuckDuration = DefaultLameDuckDuration
	}
	if o.LameDuckGracePeriod == 0 {
		o.LameDuckGracePeriod = min(DefaultLameDuckGracePeriod, o.LameDuckDuration/2)
	}
}

// Validate reports the first option that cannot work.
func (o *Options) Validate() error {
	switch {
	case o.MaxPayload < 0:
		return fmt.Errorf("%w: max_payload %d is negative", ErrInvalidOption, o.MaxPayload)
	case o.MaxControlLine < 0:
		return fmt.Errorf("%w: max_control_line %d is negative", ErrInvalidOption, o.MaxControlLine)
	case o.MaxPending < 0:
		return fmt.Errorf("%w: max_pending %d is negative", ErrInvalidOption, o.MaxPending)
	case o.MaxPending > 0 && int64(o.MaxPayload) > o.MaxPending:
		return fmt.Errorf("%w: max_payload %d is larger than max_pending %d", ErrInvalidOption, o.MaxPayload, o.MaxPending)
	case o.PingInterval < 0, o.WriteDeadline < 0, o.AuthTimeout < 0, o.LameDuckDuration < 0:
		return fmt.Errorf("%w: durations must not be negative", ErrInvalidOption)
	case o.LameDuckGracePeriod >= o.LameDuckDuration:
		return fmt.Errorf("%w: lame duck grace period (%v) should be strictly lower than lame duck duration (%v)",
			ErrInvalidOption, o.LameDuckGracePeriod, o.LameDuckDuration)
	}
	if errs := CheckAccounts(o.Accounts); len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOption, errs[0])
	}
	return nil
}

// Service is what a transport offers the broker to run: transport.Transport
// satisfies it. Defined here so the broker can own their lifecycle without
// importing the transport package.
type Service interface {
	Name() string
	Serve(ctx context.Context, b *Broker) error // returns nil after Close
	Close() error
}

// Broker is one running message broker.
type Broker struct {
	opts     atomic.Pointer[Options] // replaced whole by Reload; read with Load
	reloadMu sync.Mutex              // serializes Reload
	log      *slog.Logger
	id       string
	router   *sublist // the global account's
	accs     accounts
	start    time.Time
	nextCID  atomic.Uint64
	nconns   atomic.Int64
	closed   atomic.Bool
	stats    counters
	ctx      context.Context
	cancel   context.CancelFunc
	wg       tracker
	mu       sync.Mutex // guards the fields below
	clients  map[uint64]*Session
	closedIn struct{ msgs, bytes int64 } // counters of sessions gone
	services []Service
	onStop   []func(context.Context) error
	users    userConns // connections per identity (max_connections)

	ext map[any]any // per-broker state of transports (Extension); guarded by mu

	connWatch connWatchers // WatchConns (events.go)

	sysOnce sync.Once
	sys     *Local
	sysErr  error
}

// New builds a broker from opts (defaults applied, then validated).
func New(opts Options) (*Broker, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{
		log:     slog.New(newLimitHandler(opts.Logger.Handler(), LogRepeatInterval)),
		id:      newServerID(),
		router:  newSublist(),
		start:   time.Now(),
		clients: make(map[uint64]*Session),
	}
	if opts.ServerName == "" {
		opts.ServerName = b.id
	}
	b.opts.Store(&opts)
	b.accs.init(b.router)
	b.installAccounts(opts.Accounts)
	b.loadRetained()
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

func newServerID() string {
	var raw [35]byte
	_, _ = rand.Read(raw[:])
	return "N" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:])[:55]
}

// ID is the server id (NATS INFO server_id).
func (b *Broker) ID() string { return b.id }

// Options returns the options in effect (defaults applied).
func (b *Broker) Options() Options { return *b.opts.Load() }

// Logger is the broker's logger; transports log through it.
func (b *Broker) Logger() *slog.Logger { return b.log }

// Context is cancelled when Shutdown begins.
func (b *Broker) Context() context.Context { return b.ctx }

// Go runs f on a goroutine Shutdown waits for: every goroutine of a
// connection or service is started this way, so Shutdown ends them all.
func (b *Broker) Go(f func()) {
	b.wg.add()
	go func() {
		defer b.wg.done()
		f()
	}()
}

// Binder is a Service with an address of its own to bind (every
// transport, the monitoring listener). Start binds one that is not bound
// yet.
type Binder interface {
	Listen() error
	Addr() net.Addr // nil until Listen
}

// Start runs each service's accept loop on a tracked goroutine; Shutdown
// closes them first. A Binder not yet listening is bound here; when one
// cannot bind, Start closes those it bound, starts none and returns the
// error naming it ("broker: start nats: nats: listen 127.0.0.1:4222:
// address already in use"). Binding before Start reports address errors
// before anything runs.
func (b *Broker) Start(svcs ...Service) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := bindAll(svcs); err != nil {
		return err
	}
	b.mu.Lock()
	b.services = append(b.services, svcs...)
	b.mu.Unlock()
	for _, s := range svcs {
		s := s
		b.Go(func() {
			if err := s.Serve(b.ctx, b); err != nil && !b.closed.Load() {
				b.log.Error("transport stopped", "transport", s.Name(), "err", err)
			}
		})
	}
	return nil
}

// bindAll binds every Binder of svcs that is not listening; on an error
// it closes the ones it bound.
func bindAll(svcs []Service) error {
	var bound []Service
	for _, s := range svcs {
		l, ok := s.(Binder)
		if !ok || l.Addr() != nil {
			continue
		}
		if err := l.Listen(); err != nil {
			for _, o := range bound {
				_ = o.Close()
			}
			return fmt.Errorf("broker: start %s: %w", s.Name(), err)
		}
		bound = append(bound, s)
	}
	return nil
}

// OnShutdown registers f to run during Shutdown, after listeners stop and
// clients are closed (flush and persist hooks).
func (b *Broker) OnShutdown(f func(context.Context) error) {
	b.mu.Lock()
	b.onStop = append(b.onStop, f)
	b.mu.Unlock()
}

// Shutdown stops the broker: stop accepting, close every client (each
// flushes what it has queued), run OnShutdown hooks, then wait for tracked
// goroutines or ctx. A second call returns ErrClosed.
func (b *Broker) Shutdown(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	b.mu.Lock()
	svcs, hooks := b.services, b.onStop
	b.mu.Unlock()
	var errs []error
	for _, s := range svcs {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", s.Name(), err))
		}
	}
	b.cancel()
	for _, s := range b.sessions() {
		s.client.Close(ErrServerShutdown)
	}
	for _, f := range hooks {
		if err := f(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.wg.wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("broker: shutdown: %w", err))
	}
	return errors.Join(errs...)
}

// Closed reports whether Shutdown has begun.
func (b *Broker) Closed() bool { return b.closed.Load() }

func (b *Broker) sessions() []*Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Session, 0, len(b.clients))
	for _, s := range b.clients {
		out = append(out, s)
	}
	return out
}

// NumConnections is the number of connected clients.
func (b *Broker) NumConnections() int { return int(b.nconns.Load()) }

// NumSubscriptions is the number of subscriptions in every account's
// router (imports' internal ones included, as nats-server counts them).
func (b *Broker) NumSubscriptions() int {
	b.accs.mu.Lock()
	defer b.accs.mu.Unlock()
	n := 0
	for _, a := range b.accs.m {
		n += a.router.Count()
	}
	return n
}

// NextClientID hands out connection ids (NATS INFO client_id).
func (b *Broker) NextClientID() uint64 { return b.nextCID.Add(1) }

// counters are the broker-wide figures kept as they happen (rare events).
type counters struct {
	slowConsumers atomic.Int64
}

// Stats is a snapshot of broker-wide figures.
type Stats struct {
	InMsgs, InBytes int64 // received from publishers of every transport
	SlowConsumers   int64 // clients cut off for falling behind
	Connections     int
	Subscriptions   int
}

// Stats sums the per-session counters (kept per session so publishers on
// different cores never share a counter).
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	st := Stats{InMsgs: b.closedIn.msgs, InBytes: b.closedIn.bytes}
	for _, s := range b.clients {
		st.InMsgs += s.inMsgs.Load()
		st.InBytes += s.inBytes.Load()
	}
	b.mu.Unlock()
	st.SlowConsumers = b.stats.slowConsumers.Load()
	st.Connections = b.NumConnections()
	st.Subscriptions = b.NumSubscriptions()
	return st
}

// CountSlowConsumer records a client cut off by its transport (a write
// that timed out).
func (b *Broker) CountSlowConsumer() { b.stats.slowConsumers.Add(1) }

// GoVersion is the Go runtime version the broker was built with.
func GoVersion() string { return runtime.Version() }

// tracker counts running goroutines like a sync.WaitGroup, but goroutines
// may be added while wait runs: a client closed during Shutdown starts its
// writer to flush, and a timer may close a client at any moment.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while nobody waits
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

// wait returns once no tracked goroutine runs, or ctx ends.
func (t *tracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.n == 0 {
			t.mu.Unlock()
			return nil
		}
		if t.zero == nil {
			t.zero = make(chan struct{})
		}
		ch := t.zero
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Extension returns the per-broker value stored under key, creating it
// with mk on first use. Transports keep state shared by all their
// listeners of one broker here (MQTT sessions and retained messages),
// never in package variables.
func (b *Broker) Extension(key any, mk func() any) any {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.ext[key]; ok {
		return v
	}
	if b.ext == nil {
		b.ext = make(map[any]any)
	}
	v := mk()
	b.ext[key] = v
	return v
}

// ExtensionValue returns the per-broker value stored under key, or nil
// when nothing made one yet (a reader that must not create it).
func (b *Broker) ExtensionValue(key any) any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ext[key]
}

// Clients is a snapshot of the connected clients (monitoring, tests).
func (b *Broker) Clients() []Client {
	ss := b.sessions()
	out := make([]Client, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.client)
	}
	return out
}

// Store is the broker's Store (Options.Store, or the in-memory one).
func (b *Broker) Store() store.Store { return b.opts.Load().Store }
