package broker

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"slices"
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

// Bounds of the closed-connection history by memory (issue 16): a record
// keeps its first ClosedSubsKept subscriptions by subject (NumSubs counts
// them all, and OutMsgs every delivery), and the records together hold at
// most MaxClosedBytes (subjects, names and the records themselves); past
// either bound, or MaxClosedClients, the oldest records go.
const (
	ClosedSubsKept = 32
	MaxClosedBytes = 16 << 20
)

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
	size         int // what the record holds, for MaxClosedBytes
}

// closedConnOverhead is what a record costs besides its strings.
const closedConnOverhead = 512

// subSnapshotOverhead is what a kept subscription costs besides its strings.
const subSnapshotOverhead = 64

// measure sets cc.size. Once, before the record is shared.
func (cc *ClosedConn) measure() {
	n := closedConnOverhead + len(cc.Info.Name) + len(cc.Info.Remote) + len(cc.Info.Transport) + len(cc.Account) + len(cc.Reason)
	if st := cc.Stats; st != nil {
		n += len(st.Lang) + len(st.Version) + len(st.Reason)
	}
	for _, sub := range cc.Subs {
		n += subSnapshotOverhead + len(sub.Subject) + len(sub.Queue)
	}
	cc.size = n
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
	var list []*Subscription
	for sub := range subs {
		c.OutMsgs += sub.delivered.Load()
		if kept {
			list = append(list, sub)
		}
	}
	slices.SortFunc(list, func(x, y *Subscription) int {
		return cmp.Or(bytes.Compare(x.Subject, y.Subject), bytes.Compare(x.Queue, y.Queue))
	})
	for _, sub := range list[:min(len(list), ClosedSubsKept)] {
		c.Subs = append(c.Subs, SubSnapshot{Subject: string(sub.Subject), Queue: string(sub.Queue), Delivered: sub.delivered.Load(), Max: sub.max.Load()})
	}
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
	cc.measure()
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

// ClosedBytes is what the closed-connection history holds (bounded by
// MaxClosedBytes).
func (b *Broker) ClosedBytes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapLocked().history.bytes
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

// closedRing keeps the newest records, at most max of them and
// MaxClosedBytes in all. Guarded by b.mu.
type closedRing struct {
	buf   []*ClosedConn // oldest first, from head
	head  int
	bytes int
}

// add records cc, keeping at most max (≤ 0: none) and MaxClosedBytes.
func (r *closedRing) add(cc *ClosedConn, max int) {
	if max <= 0 {
		*r = closedRing{}
		return
	}
	r.buf = append(r.buf, cc)
	r.bytes += cc.size
	for n := len(r.buf) - r.head; n > max || r.bytes > MaxClosedBytes && n > 0; n-- {
		r.bytes -= r.buf[r.head].size
		r.buf[r.head] = nil
		r.head++
	}
	if r.head >= 64 && r.head >= len(r.buf)/2 { // reuse the dropped half
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf, r.head = r.buf[:n], 0
	}
}

// list copies the records, oldest first.
func (r *closedRing) list() []*ClosedConn {
	return append([]*ClosedConn(nil), r.buf[r.head:]...)
}
