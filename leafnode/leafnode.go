// Package leafnode connects a busbar broker to a NATS cluster (nats-server,
// unmodified) as a leaf node: one link per configured remote, speaking
// nats-server's leaf protocol (INFO, CONNECT, LS+, LS-, LMSG, HMSG).
//
// A link is a client of the router like any other (broker.Forwarder):
// the hub's interest is held in the router as the link's subscriptions,
// so a local publish goes to the hub only when someone there listens, and
// once per publish whatever number of its subscriptions match; local
// interest goes to the hub as LS+/LS-, aggregated per subject and queue
// group, and in full after every reconnect. Queue groups pick a local
// member first, else name the group to the hub. A message from the hub is
// delivered locally and never sent back.
package leafnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// Defaults, as nats-server has them.
const (
	DefaultReconnect        = time.Second
	DefaultFirstInfoTimeout = time.Second
	DefaultDialTimeout      = time.Second
	// After the hub reports a loop, a permissions violation or a
	// duplicate leaf name the link waits this long before connecting
	// again.
	DefaultErrorDelay = 30 * time.Second
)

// Options configures the leaf node links of one broker.
type Options struct {
	Remotes []Remote
	// Reconnect is the wait after every URL of a remote failed once
	// (a random jitter of up to a quarter is added). Default 1s.
	Reconnect time.Duration
	// Name is the leaf's name in CONNECT; it must be unique among the
	// hub's leaves. Default: the broker's server name (server_name, or
	// its generated server id).
	Name string
	// Logger; nil: the broker's.
	Logger *slog.Logger
	// ErrorDelay is the wait after the hub reported a loop, a
	// permissions violation or a duplicate leaf name. Default 30s.
	ErrorDelay time.Duration
}

// Remote is one hub to connect to (a `leafnodes { remotes [...] }` entry).
type Remote struct {
	// URLs of the hub cluster's leafnode ports: nats-leaf://, nats://,
	// tls://; or of its websocket ports: ws://, wss:// (all of one kind).
	// User info in a URL is used as user/password.
	URLs []string
	// Account is the local account the link binds to ("": the global one).
	Account string
	// Credentials is a .creds file (user JWT and nkey seed).
	Credentials string
	// NKey is an nkey seed ("SU..."): its public key and a signature of
	// the hub's nonce are sent.
	NKey           string
	User, Password string
	// TLS, when set, is the client TLS configuration (RootCAs, client
	// certificate). tls:// URLs and hubs that require TLS use it, or the
	// system roots when nil.
	TLS               *tls.Config
	TLSHandshakeFirst bool
	TLSTimeout        time.Duration // default 2s
	// DenyImports are subjects not taken from the hub: no interest is
	// sent for them and messages on them are dropped. DenyExports are
	// subjects never sent to the hub.
	DenyImports, DenyExports []string
	NoRandomize              bool
	FirstInfoTimeout         time.Duration // default 1s
	DialTimeout              time.Duration // default 1s
	// WSCompression asks a ws:// or wss:// hub for permessage-deflate;
	// WSNoMasking asks it to accept unmasked frames (the hub decides).
	WSCompression, WSNoMasking bool
}

// Service runs the links; it satisfies broker.Service, so Broker.Start
// runs it and Broker.Shutdown closes it.
type Service struct {
	opts  Options
	links []*link

	mu     sync.Mutex
	cancel context.CancelFunc
	closed bool
	b      *broker.Broker
}

var _ broker.Service = (*Service)(nil)

// New checks opts and returns a Service ready for Broker.Start.
func New(opts Options) (*Service, error) {
	if opts.Reconnect <= 0 {
		opts.Reconnect = DefaultReconnect
	}
	if opts.ErrorDelay <= 0 {
		opts.ErrorDelay = DefaultErrorDelay
	}
	s := &Service{opts: opts}
	for i := range opts.Remotes {
		r := opts.Remotes[i]
		if r.FirstInfoTimeout <= 0 {
			r.FirstInfoTimeout = DefaultFirstInfoTimeout
		}
		if r.DialTimeout <= 0 {
			r.DialTimeout = DefaultDialTimeout
		}
		if r.TLSTimeout <= 0 {
			r.TLSTimeout = 2 * time.Second
		}
		if len(r.URLs) == 0 {
			return nil, fmt.Errorf("%w (remote %d)", ErrNoURL, i+1)
		}
		l := &link{svc: s, r: r, idx: i}
		for _, raw := range r.URLs {
			u, err := parseURL(raw)
			if err != nil {
				return nil, err
			}
			if len(l.urls) > 0 && isWS(u) != isWS(l.urls[0]) {
				return nil, fmt.Errorf("%w %q: a remote's URLs are all websocket (ws://, wss://) or none", ErrBadURL, raw)
			}
			l.urls = append(l.urls, u)
		}
		if !r.NoRandomize {
			rand.Shuffle(len(l.urls), func(i, j int) { l.urls[i], l.urls[j] = l.urls[j], l.urls[i] })
		}
		if r.Credentials != "" {
			if _, _, err := readCreds(r.Credentials); err != nil {
				return nil, err
			}
		}
		if r.NKey != "" {
			if _, err := nkeyFromSeed(r.NKey); err != nil {
				return nil, err
			}
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadURL, raw, err)
	}
	port := "7422"
	switch u.Scheme {
	case "nats-leaf", "nats", "tls":
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	default:
		return nil, fmt.Errorf("%w %q: scheme must be nats-leaf://, nats://, tls://, ws:// or wss://", ErrBadURL, raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// Name is "leafnode".
func (s *Service) Name() string { return "leafnode" }

// Serve runs every link until Close or ctx ends; it returns nil then.
func (s *Service) Serve(ctx context.Context, b *broker.Broker) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.b = b
	s.mu.Unlock()
	log := s.opts.Logger
	if log == nil {
		log = b.Logger()
	}
	name := s.opts.Name
	if name == "" {
		name = b.Options().ServerName
	}
	var wg sync.WaitGroup
	for _, l := range s.links {
		l.b, l.name = b, name
		l.log = log.With("leafnode", l.idx+1)
		l.lds = "$LDS." + randomID()
		l.watch = b.WatchInterest(l.r.Account, l.interestChanged)
		wg.Add(1)
		b.Go(func() {
			defer wg.Done()
			l.run(ctx)
		})
	}
	<-ctx.Done()
	for _, l := range s.links {
		l.watch.Stop()
		l.closeConn(ErrClosed)
	}
	wg.Wait()
	return nil
}

// Close stops the links: current connections are closed and no new ones
// made.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	return nil
}

// link is one remote: it connects, and reconnects, one conn at a time.
type link struct {
	svc   *Service
	b     *broker.Broker
	r     Remote
	idx   int
	name  string
	log   *slog.Logger
	lds   string
	watch *broker.InterestWatch

	mu   sync.Mutex // guards the fields below
	urls []*url.URL
	next int
	cur  *conn
	last error // why the last connection ended or failed

	delay      atomic.Int64 // extra wait before the next attempt (ns), set by hub errors
	reconnects atomic.Int64
	stats      counters // of every connection so far
}

// counters are message and byte counts one way or the other.
type counters struct {
	inMsgs, inBytes, outMsgs, outBytes atomic.Int64
	tooLong                            atomic.Int64 // messages kept here: their line is too long for the hub
}

func (l *link) nextURL() *url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.urls[l.next%len(l.urls)]
	l.next = (l.next + 1) % len(l.urls)
	return u
}

// addURLs adds the hub cluster's other leafnode URLs (INFO
// leafnode_urls) to the rotation, keeping the scheme and user info of
// the configured ones.
func (l *link) addURLs(hostports []string, like *url.URL) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, hp := range hostports {
		known := false
		for _, u := range l.urls {
			if u.Host == hp {
				known = true
				break
			}
		}
		if !known {
			u := *like
			u.Host = hp
			l.urls = append(l.urls, &u)
		}
	}
}

// run connects until ctx ends: after a connection that was up ended, the
// next URL at once; after every URL failed once, Reconnect plus jitter.
func (l *link) run(ctx context.Context) {
	fails := 0
	for ctx.Err() == nil {
		if d := time.Duration(l.delay.Swap(0)); d > 0 {
			l.log.Warn("leafnode: waiting before reconnecting", "wait", d)
			if !sleep(ctx, d) {
				return
			}
		}
		u := l.nextURL()
		up, err := l.connect(ctx, u)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.last = err
		n := len(l.urls)
		l.mu.Unlock()
		if up {
			fails = 0
			l.reconnects.Add(1)
			l.log.Warn("leafnode: link down, reconnecting", "url", redact(u), "err", err)
			continue
		}
		lvl := slog.LevelError
		if errors.Is(err, ErrHubRefused) {
			lvl = slog.LevelDebug // onErr logged the hub's -ERR with a hint
		}
		l.log.Log(ctx, lvl, "leafnode: could not connect", "url", redact(u), "err", err)
		if fails++; fails >= n {
			fails = 0
			d := l.svc.opts.Reconnect
			d += rand.N(d/4 + 1)
			if !sleep(ctx, d) {
				return
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// redact drops the password from a URL for logs.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (l *link) current() *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

func (l *link) closeConn(reason error) {
	if c := l.current(); c != nil {
		c.Close(reason)
	}
}

// interestChanged sends a change of local interest to the hub. It runs
// with the account router's lock held (broker.InterestFunc).
func (l *link) interestChanged(subject, queue []byte, n int) {
	if c := l.current(); c != nil {
		c.sendInterest(subject, queue, n)
	}
}

func randomID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [22]byte
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b[:])
}
