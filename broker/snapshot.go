package broker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/busbar/busbar/auth"
)

// Read-only snapshots for monitoring (package monitor): the connections
// with their counters and subscriptions, the totals of connections gone,
// the router's figures and authentication failures by reason. Nothing
// here runs on a publish path; every call copies what it returns.

// ConnStats are the figures of a connection only its transport knows.
type ConnStats struct {
	Start, LastActivity time.Time
	OutMsgs, OutBytes   int64 // written to the peer
	Pending             int64 // bytes queued for the writer
	Lang, Version       string
	RTT                 time.Duration // PING round trip, when measured
	// Reason is why the connection closed, in nats-server's words
	// (Reason* constants, CloseReason); empty while it is open.
	Reason string
}

// ConnStatser is an optional interface of a Client: monitoring shows its
// ConnStats, and the broker adds its out counters to the totals of
// connections gone when the session closes. ConnStats may run with the
// broker's lock held (Session.Close): it must only read atomics or take
// locks never held while calling into the broker.
type ConnStatser interface {
	ConnStats() ConnStats
}

// HealthChecker is an optional interface of a Service: monitoring's
// /healthz fails while Healthy returns an error (a listener whose accept
// loop stopped). It may run on any goroutine.
type HealthChecker interface {
	Healthy() error
}

// ConnKey names a kind of connection: the transport that registered it and
// its connection type (NATS over WebSocket registers as "nats" with
// WEBSOCKET, MQTT over WebSocket as "mqtt" with MQTT_WS).
type ConnKey struct {
	Transport string
	ConnType  auth.ConnType
}

// Totals are message counters of one connection or of many.
type Totals struct {
	InMsgs, InBytes   int64 // received from the peer
	OutMsgs, OutBytes int64 // sent to it (see ConnSnapshot.OutMsgs)
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	t.InMsgs += o.InMsgs
	t.InBytes += o.InBytes
	t.OutMsgs += o.OutMsgs
	t.OutBytes += o.OutBytes
}

// SubSnapshot is one subscription of a connection.
type SubSnapshot struct {
	Subject, Queue string
	Delivered      int64 // messages delivered so far
	Max            int64 // auto-unsubscribe limit; 0: none
}

// ConnSnapshot is one session as monitoring sees it.
type ConnSnapshot struct {
	Info     ClientInfo
	Client   Client // for optional interfaces (ConnStatser)
	Account  string
	Detached bool       // an MQTT session kept between connections, not a connection
	Totals              // OutMsgs/OutBytes: the Client's ConnStats when it has them, else OutMsgs counts deliveries to its current subscriptions
	Stats    *ConnStats // nil unless the Client is a ConnStatser
	NumSubs  int
	Subs     []SubSnapshot // only when asked for
}

// Snapshot is a consistent view of the connections: no session is both
// among Conns and in Closed.
type Snapshot struct {
	Conns  []ConnSnapshot     // by connection id
	Closed map[ConnKey]Totals // sessions gone, by kind
	// TotalConnections counts the connection ids handed out (every
	// session, in-process and detached ones included).
	TotalConnections uint64
}

// Snapshot copies the sessions and their counters; with subs, each
// session's subscriptions too. Takes b.mu briefly, then each session's
// lock in turn.
func (b *Broker) Snapshot(subs bool) Snapshot {
	b.mu.Lock()
	ss := make([]*Session, 0, len(b.clients))
	for _, s := range b.clients {
		ss = append(ss, s)
	}
	closed := make(map[ConnKey]Totals)
	for k, t := range b.snapLocked().closed {
		closed[k] = t
	}
	b.mu.Unlock()
	snap := Snapshot{Conns: make([]ConnSnapshot, 0, len(ss)), Closed: closed, TotalConnections: b.nextCID.Load()}
	for _, s := range ss {
		snap.Conns = append(snap.Conns, s.snapshot(subs))
	}
	slices.SortFunc(snap.Conns, func(x, y ConnSnapshot) int {
		switch {
		case x.Info.ID < y.Info.ID:
			return -1
		case x.Info.ID > y.Info.ID:
			return 1
		}
		return 0
	})
	return snap
}

// snapshot copies one session. Takes s.mu.
func (s *Session) snapshot(withSubs bool) ConnSnapshot {
	c := ConnSnapshot{Client: s.client, Detached: s.detached, Account: s.acc.Load().name}
	s.mu.Lock()
	c.Info = s.info
	c.NumSubs = len(s.subs)
	for sub := range s.subs {
		n := sub.delivered.Load()
		c.OutMsgs += n
		if withSubs {
			c.Subs = append(c.Subs, SubSnapshot{Subject: string(sub.Subject), Queue: string(sub.Queue), Delivered: n, Max: sub.max.Load()})
		}
	}
	s.mu.Unlock()
	c.InMsgs, c.InBytes = s.inMsgs.Load(), s.inBytes.Load()
	if cs, ok := s.client.(ConnStatser); ok {
		st := cs.ConnStats()
		c.Stats = &st
		c.OutMsgs, c.OutBytes = st.OutMsgs, st.OutBytes
	}
	sortSubs(c.Subs)
	return c
}

// sortSubs orders subscriptions by subject, then queue.
func sortSubs(subs []SubSnapshot) {
	slices.SortFunc(subs, func(x, y SubSnapshot) int {
		if x.Subject != y.Subject {
			if x.Subject < y.Subject {
				return -1
			}
			return 1
		}
		switch {
		case x.Queue < y.Queue:
			return -1
		case x.Queue > y.Queue:
			return 1
		}
		return 0
	})
}

// foldLocked adds a closing session's counters (cc, made by closedConn)
// to the totals of sessions gone, and records it in the closed-connection
// history. Session.Close, b.mu held.
func (b *Broker) foldLocked(cc *ClosedConn) {
	st := b.snapLocked()
	k := ConnKey{Transport: cc.Info.Transport, ConnType: cc.Info.ConnType} // both immutable after Connect
	cur := st.closed[k]
	cur.Add(cc.Totals)
	st.closed[k] = cur
	b.recordClosedLocked(st, cc)
}

// snapState is the monitoring state a broker keeps, in b.ext.
type snapState struct {
	closed  map[ConnKey]Totals  // guarded by b.mu
	reasons map[closedKey]int64 // closed connections by kind and reason; b.mu
	history closedRing          // the last closed connections; b.mu

	authMu sync.Mutex
	auth   map[AuthFailureKey]int64
}

type snapKey struct{}

// snapLocked returns the broker's snapState, made on first use. b.mu held.
func (b *Broker) snapLocked() *snapState {
	if v, ok := b.ext[snapKey{}]; ok {
		return v.(*snapState)
	}
	if b.ext == nil {
		b.ext = make(map[any]any)
	}
	st := &snapState{closed: make(map[ConnKey]Totals), reasons: make(map[closedKey]int64), auth: make(map[AuthFailureKey]int64)}
	b.ext[snapKey{}] = st
	return st
}

func (b *Broker) snap() *snapState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapLocked()
}

// Reasons an authentication is refused (AuthFailureKey.Reason).
const (
	AuthInvalidCredentials = "invalid_credentials" // the Authenticator refused them
	AuthConnType           = "connection_type"     // the user may not use this connection type
	AuthExpired            = "expired"             // the identity's credentials have expired
	AuthError              = "error"               // the Authenticator could not decide
)

// AuthFailureKey counts refused authentications by connection type and
// reason.
type AuthFailureKey struct {
	ConnType auth.ConnType
	Reason   string
}

// Authenticate runs the broker's Authenticator on cr. With no
// Authenticator every connection is accepted anonymously. Refusals are
// counted by reason (AuthFailures).
func (b *Broker) Authenticate(ctx context.Context, cr *auth.Credentials) (*auth.Identity, error) {
	id, err := b.authenticate(ctx, cr)
	if err != nil {
		b.countAuthFailure(cr, err)
	}
	return id, err
}

// countAuthFailure counts a refused authentication for monitoring.
func (b *Broker) countAuthFailure(cr *auth.Credentials, err error) {
	k := AuthFailureKey{Reason: authReason(err)}
	if cr != nil {
		k.ConnType = cr.Conn
	}
	st := b.snap()
	st.authMu.Lock()
	st.auth[k]++
	st.authMu.Unlock()
}

func authReason(err error) string {
	switch {
	case errors.Is(err, ErrConnType):
		return AuthConnType
	case errors.Is(err, ErrAuthExpired):
		return AuthExpired
	case err == auth.ErrNotAuthorized: //nolint:errorlint // identity: a wrapped one carries the Authenticator's own error
		return AuthInvalidCredentials
	}
	return AuthError
}

// AuthFailures returns the refused authentications so far.
func (b *Broker) AuthFailures() map[AuthFailureKey]int64 {
	st := b.snap()
	st.authMu.Lock()
	defer st.authMu.Unlock()
	out := make(map[AuthFailureKey]int64, len(st.auth))
	for k, n := range st.auth {
		out[k] = n
	}
	return out
}

// Services returns the services Start runs (listeners), in start order.
func (b *Broker) Services() []Service {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.services)
}

// StartTime is when New made the broker.
func (b *Broker) StartTime() time.Time { return b.start }

// RouterStats are the router's figures, summed over accounts.
type RouterStats struct {
	Subscriptions int     // imports' internal subscriptions included
	CacheEntries  int     // cached match results
	MaxFanout     int     // the most subscriptions one cached result holds
	AvgFanout     float64 // over cached results
}

// RouterStats sums the routers of every account, or of the account named
// acc when not empty. Takes each router's lock for reading in turn.
func (b *Broker) RouterStats(acc string) RouterStats {
	b.accs.mu.Lock()
	routers := make([]*sublist, 0, len(b.accs.m))
	for name, a := range b.accs.m {
		if acc == "" || acc == name {
			routers = append(routers, a.router)
		}
	}
	b.accs.mu.Unlock()
	var st RouterStats
	fanout := 0
	for _, r := range routers {
		r.mu.RLock()
		st.Subscriptions += r.count
		st.CacheEntries += len(r.cache)
		for _, res := range r.cache {
			n := len(res.Psubs)
			for _, q := range res.Qsubs {
				n += len(q)
			}
			fanout += n
			st.MaxFanout = max(st.MaxFanout, n)
		}
		r.mu.RUnlock()
	}
	if st.CacheEntries > 0 {
		st.AvgFanout = float64(fanout) / float64(st.CacheEntries)
	}
	return st
}
