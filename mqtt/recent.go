package mqtt

import (
	"runtime"
	"sync"
	"time"

	"github.com/busbar/busbar/broker"
)

// A SUBSCRIBE and another client's PUBLISH that reach the broker within
// microseconds of each other are read by two goroutines, and Go's network
// poller wakes the last-ready connection first: the PUBLISH, although it
// arrived second, is routed before the subscription exists (issue 17,
// item 3; paho's test_subscribe_options and test_request_response). A
// single-threaded broker reads sockets in arrival order and delivers it.
//
// recentLog gives a new subscription that order back. Each account keeps
// its last MQTT publishes (recentSlots of them, small ones only) with the
// time their PUBLISH was read; a new subscription takes in those read at
// most recentWindow() before its SUBSCRIBE was: a broker reading in order
// could have read them after it (the times are taken when a read returns
// to its goroutine, not when the bytes arrived, so a tighter bound, such
// as the subscriber's previous read, would miss some). Never what the
// connection's session could have had already: nothing read before its
// CONNECT or its last UNSUBSCRIBE, nothing its other subscriptions
// deliver, none of its own publishes.
//
// Exactly once and in order: a publish reserves its slot before it is
// routed and fills it after; the subscription holds its live deliveries
// (holdList) from the moment it is in the router; it waits for the
// slots reserved before that to be filled, then, under the session's
// lock, sends the recorded messages the router did not give it (not among
// those held) in publish order, then the held ones, then delivers live.
type recentLog struct {
	mu    sync.Mutex
	next  uint64 // sequence number of the next reservation; slot next%recentSlots
	slots [recentSlots]recentSlot
}

const (
	recentSlots = 64
	// defaultRecentWindow is how long before a SUBSCRIBE was read a
	// publish may have been read and still be caught up.
	defaultRecentWindow = 50 * time.Millisecond
	// recentMaxCopy bounds what a slot holds (subject, header, payload
	// and 5.0 properties, copied or shared): larger messages are not recorded, so the log
	// holds at most recentSlots*recentMaxCopy bytes per account.
	recentMaxCopy = 2048
)

type recentSlot struct {
	seq   uint64 // which reservation the slot holds now
	at    int64  // when its PUBLISH was read (Unix ns)
	state uint8  // recentPending until filled
	m     broker.Message
	buf   []byte
}

const (
	recentPending uint8 = iota
	recentRouted
	recentSkipped // refused by the gate, or too large to record
)

// recentWindow is how long before a SUBSCRIBE was read a publish may
// have been read and still be caught up.
func (srv *server) recentWindow() time.Duration {
	if srv.opts.recentWindow > 0 {
		return srv.opts.recentWindow
	}
	return defaultRecentWindow
}

// recentFor is account's log, made on first use. Any goroutine.
func (srv *server) recentFor(account string) *recentLog {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	l := srv.recent[account]
	if l == nil {
		if srv.recent == nil {
			srv.recent = make(map[string]*recentLog)
		}
		l = new(recentLog)
		srv.recent[account] = l
	}
	return l
}

// reserve claims the next slot for a publish read at at (Unix ns) and
// returns its sequence number. Publisher's read loop, before routing.
func (l *recentLog) reserve(at int64) uint64 {
	l.mu.Lock()
	seq := l.next
	l.next++
	sl := &l.slots[seq%recentSlots]
	sl.seq, sl.at, sl.state = seq, at, recentPending
	l.mu.Unlock()
	return seq
}

// fill records m, just routed (routed false: refused), in slot seq.
// Publisher's read loop, right after routing: m's borrowed slices are
// still valid.
func (l *recentLog) fill(seq uint64, m *broker.Message, routed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := &l.slots[seq%recentSlots]
	if sl.seq != seq {
		return // overwritten meanwhile: a burst went round the whole log
	}
	sl.state, sl.m = recentSkipped, broker.Message{} // keeps nothing of an older one
	// A stable payload and the 5.0 properties are shared, not copied, but
	// the slot would keep them alive: they count as well.
	size := len(m.Subject) + len(m.Header) + len(m.Payload)
	if x, ok := m.Ext.(*msgExt); ok && x != nil {
		size += x.size
	}
	if !routed || size > recentMaxCopy {
		return
	}
	sl.buf = m.CopyTo(&sl.m, sl.buf)
	sl.state = recentRouted
}

// window returns the range of sequence numbers [lo, hi) the log still
// holds. Any goroutine.
func (l *recentLog) window() (lo, hi uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hi = l.next
	return hi - min(hi, recentSlots), hi
}

// settle waits until every publish in [lo, hi) read at or after from has
// been routed: their routing started before the caller's subscriptions
// were in the router, and never blocks. Never called with a session lock
// held (a publish in flight may need it to deliver).
func (l *recentLog) settle(lo, hi uint64, from int64) {
	for seq := lo; seq < hi; seq++ {
		for {
			l.mu.Lock()
			sl := &l.slots[seq%recentSlots]
			pending := sl.seq == seq && sl.at >= from && sl.state == recentPending
			l.mu.Unlock()
			if !pending {
				break
			}
			runtime.Gosched()
		}
	}
}

// each calls fn with every message of [lo, hi) read at or after from,
// still recorded and routed, in publish order, with l.mu held: fn must
// not publish. m is borrowed (valid during the call; Stable to keep it).
func (l *recentLog) each(lo, hi uint64, from int64, fn func(m *broker.Message)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for seq := lo; seq < hi; seq++ {
		if sl := &l.slots[seq%recentSlots]; sl.seq == seq && sl.at >= from && sl.state == recentRouted {
			fn(&sl.m)
		}
	}
}

// holdList keeps the live deliveries to the subscriptions one SUBSCRIBE
// adds, from before they are in the router until catchUp, in order,
// once per publish. s.mu held.
type holdList struct{ msgs []*broker.Message }

func (h *holdList) add(m *broker.Message) {
	if n := len(h.msgs); n > 0 && samePublish(h.msgs[n-1], m) {
		return // overlapping new subscriptions: one copy
	}
	h.msgs = append(h.msgs, m.Stable())
}

func (h *holdList) has(m *broker.Message) bool {
	for _, x := range h.msgs {
		if samePublish(x, m) {
			return true
		}
	}
	return false
}

func samePublish(a, b *broker.Message) bool {
	return a.Origin() == b.Origin() && a.PublishID() == b.PublishID()
}

// catchUp completes the subscriptions news that one SUBSCRIBE added
// (in the router, holding their live deliveries in h since before they
// were inserted): it sends what the log recorded from from on that the
// router did not give them, then the held deliveries, and ends the hold.
// The subscribing connection's own publishes (self) came before its
// SUBSCRIBE in its own order: they are not caught up.
// A recorded retained publish is left to the retained replay of a
// subscription that gets one (Retain Handling). Subscriber's read loop,
// no lock held.
func (s *session) catchUp(l *recentLog, h *holdList, news []*subState, from int64, self broker.Client) {
	lo, hi := l.window()
	l.settle(lo, hi, from)
	s.mu.Lock()
	ok := true
	if !s.ended {
		l.each(lo, hi, from, func(m *broker.Message) {
			if m.Origin() == self || h.has(m) || s.matchedElsewhere(h, m) {
				return
			}
			for _, st := range news {
				if m.Retain && st.rh != 2 || !s.matches(st, m) || !s.bs.CanReceive(m.Subject, st.q) {
					continue
				}
				ok = s.deliverLocked(st, m) && ok
				return
			}
		})
		for _, m := range h.msgs {
			for _, st := range news {
				if s.matches(st, m) {
					ok = s.deliverLocked(st, m) && ok
					break
				}
			}
		}
	}
	for _, st := range news {
		st.hold = nil // live from here on: after what was held
	}
	s.mu.Unlock()
	if !ok {
		s.Close(broker.ErrSlowConsumer)
	}
}

// matchedElsewhere reports whether a subscription of the session other
// than those holding in h delivers m: the client got it through that one
// (one copy per client, [MQTT-3.3.4-2]). s.mu held.
func (s *session) matchedElsewhere(h *holdList, m *broker.Message) bool {
	if c := s.plain.lit[string(m.Subject)]; c != nil && c.hold != h && s.matches(c, m) {
		return true
	}
	for _, c := range s.plain.wild {
		if c.hold != h && s.matches(c, m) {
			return true
		}
	}
	return false
}
