package broker

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/busbar/busbar/auth"
)

// Closed-connection history for monitoring (/connz?state=closed): the
// last Options.MaxClosedClients connections that ended, with when and
// why, as nats-server keeps them. Recorded by Session.Close; nothing here
// runs on a publish path.

// DefaultMaxClosedClients is how many closed connections are kept when
// Options.MaxClosedClients is 0 (nats-server's max_closed_clients).
const DefaultMaxClosedClients = 10000

// Why a connection closed, in nats-server's words (its ClosedState
// strings), for ConnStats.Reason and ClosedConn.Reason.
const (
	ReasonClientClosed         = "Client Closed"
	ReasonAuthTimeout          = "Authentication Timeout"
	ReasonAuthViolation        = "Authentication Failure"
	ReasonTLSHandshake         = "TLS Handshake Failure"
	ReasonSlowConsumerPending  = "Slow Consumer (Pending Bytes)"
	ReasonSlowConsumerDeadline = "Slow Consumer (Write Deadline)"
	ReasonWriteError           = "Write Error"
	ReasonReadError            = "Read Error"
	ReasonParseError           = "Parse Error"
	ReasonStale                = "Stale Connection"
	ReasonProtocolViolation    = "Protocol Violation"
	ReasonBadProtocolVersion   = "Bad Client Protocol Version"
	ReasonMaxConnections       = "Maximum Connections Exceeded"
	ReasonMaxPayload           = "Maximum Message Payload Exceeded"
	ReasonMaxControlLine       = "Maximum Control Line Exceeded"
	ReasonServerShutdown       = "Server Shutdown"
	ReasonAuthExpired          = "Authentication Expired"
	ReasonDuplicateClientID    = "Duplicate Client ID"
)

// WriteError is a failed write to the peer, for Client.Close: a write that
// timed out is a slow consumer (errors.Is(err, ErrSlowConsumer)).
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "broker: write to client: " + e.Err.Error() }

// Unwrap gives the write's error, and ErrSlowConsumer for a timeout.
func (e *WriteError) Unwrap() []error {
	if e.timeout() {
		return []error{ErrSlowConsumer, e.Err}
	}
	return []error{e.Err}
}

func (e *WriteError) timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// CloseReason names why a connection closed for the errors every
// transport shares (nil and io.EOF: the client closed it). Transports
// name their protocol's own errors first and fall back on it.
func CloseReason(err error) string {
	var we *WriteError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return ReasonClientClosed
	case errors.As(err, &we):
		if we.timeout() {
			return ReasonSlowConsumerDeadline
		}
		return ReasonWriteError
	case errors.Is(err, ErrSlowConsumer):
		return ReasonSlowConsumerPending
	case errors.Is(err, ErrClosed), errors.Is(err, ErrServerShutdown):
		return ReasonServerShutdown
	case errors.Is(err, ErrAuthExpired):
		return ReasonAuthExpired
	case errors.Is(err, auth.ErrNotAuthorized), errors.Is(err, ErrConnType):
		return ReasonAuthViolation
	case errors.Is(err, ErrMaxConnections):
		return ReasonMaxConnections
	}
	return ReasonReadError
}

// ClosedConn is a connection that ended: what monitoring showed of it
// last, and when and why it closed. Immutable once recorded.
type ClosedConn struct {
	ConnSnapshot // Client is nil: the record keeps no connection alive
	Stop         time.Time
	Reason       string
}

// closedKey counts closed connections by kind and reason.
type closedKey struct {
	ConnKey
	Reason string
}

// ClosedCount is how many connections of one kind closed for one reason.
type ClosedCount struct {
	ConnKey
	Reason string
	N      int64
}

// closedConn makes the record of a closing session: its counters, its
// transport's figures and the subscriptions it had. Session.Close, before
// b.mu is taken; takes s.mu.
func (s *Session) closedConn(subs map[*Subscription]struct{}) *ClosedConn {
	cc := &ClosedConn{Stop: time.Now()}
	c := &cc.ConnSnapshot
	c.Detached, c.Account = s.detached, s.acc.Load().name
	s.mu.Lock()
	c.Info = s.info
	s.mu.Unlock()
	c.InMsgs, c.InBytes = s.inMsgs.Load(), s.inBytes.Load()
	c.NumSubs = len(subs)
	kept := !s.detached && s.b.opts.Load().MaxClosedClients > 0 // else only the totals are wanted
	for sub := range subs {
		n := sub.delivered.Load()
		if kept {
			c.Subs = append(c.Subs, SubSnapshot{Subject: string(sub.Subject), Queue: string(sub.Queue), Delivered: n, Max: sub.max.Load()})
		}
		c.OutMsgs += n
	}
	sortSubs(c.Subs)
	if cs, ok := s.client.(ConnStatser); ok {
		st := cs.ConnStats()
		c.Stats = &st
		c.OutMsgs, c.OutBytes = st.OutMsgs, st.OutBytes
		cc.Reason = st.Reason
	}
	if cc.Reason == "" {
		cc.Reason = ReasonClientClosed
		if s.b.closed.Load() {
			cc.Reason = ReasonServerShutdown
		}
	}
	return cc
}

// recordClosedLocked adds cc to the history and the counts by reason.
// Sessions that are not connections (detached) are left out. b.mu held.
func (b *Broker) recordClosedLocked(st *snapState, cc *ClosedConn) {
	if cc.Detached {
		return
	}
	k := closedKey{ConnKey{Transport: cc.Info.Transport, ConnType: cc.Info.ConnType}, cc.Reason}
	st.reasons[k]++
	st.history.add(cc, b.opts.Load().MaxClosedClients)
}

// ClosedConns returns the closed connections kept, oldest first. The
// records are shared and must not be modified.
func (b *Broker) ClosedConns() []*ClosedConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapLocked().history.list()
}

// ClosedCounts returns how many connections closed, by kind and reason,
// since the broker started (not bounded by MaxClosedClients).
func (b *Broker) ClosedCounts() []ClosedCount {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.snapLocked()
	out := make([]ClosedCount, 0, len(st.reasons))
	for k, n := range st.reasons {
		out = append(out, ClosedCount{ConnKey: k.ConnKey, Reason: k.Reason, N: n})
	}
	return out
}

// closedRing keeps the newest max records. Guarded by b.mu.
type closedRing struct {
	buf  []*ClosedConn // in order while not full; then next is the oldest
	next int
	max  int
}

// add records cc, keeping at most max (≤ 0: none).
func (r *closedRing) add(cc *ClosedConn, max int) {
	if max <= 0 {
		r.buf, r.next, r.max = nil, 0, max
		return
	}
	if max != r.max { // first use, or a reload changed the bound
		l := r.list()
		if len(l) > max {
			l = l[len(l)-max:]
		}
		r.buf, r.next, r.max = l, 0, max
	}
	if len(r.buf) < max {
		r.buf = append(r.buf, cc)
		return
	}
	r.buf[r.next] = cc
	r.next = (r.next + 1) % max
}

// list copies the records, oldest first.
func (r *closedRing) list() []*ClosedConn {
	out := make([]*ClosedConn, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
