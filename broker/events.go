package broker

import (
	"sync"
	"sync/atomic"

	"github.com/busbar/busbar/auth"
)

// ConnEvent tells a WatchConns watcher that a client was admitted (its
// identity accepted: Session.Admit) or, with Closed set, that an
// admitted client is gone.
type ConnEvent struct {
	// Session is the client's session. At connect it is alive: its
	// ConnSnapshot may be read later, on the watcher's own goroutine.
	Session *Session
	// Closed is the final record of a client gone (counters, stats,
	// reason, stop time); nil at connect.
	Closed *ClosedConn
}

// connWatchers holds the WatchConns callbacks: a copy-on-write list, so
// Admit and Close read it with one atomic load.
type connWatchers struct {
	mu   sync.Mutex // serializes changes
	list atomic.Pointer[[]*func(ConnEvent)]
}

// WatchConns calls fn for every client admitted from now on and every
// admitted client that closes (the system account's connect and
// disconnect advisories). fn runs on the goroutine that admitted or
// closed the client, with no broker lock held: it must return quickly
// and not block (queue the event). stop removes fn.
func (b *Broker) WatchConns(fn func(ConnEvent)) (stop func()) {
	w := &b.connWatch
	p := &fn
	w.mu.Lock()
	var next []*func(ConnEvent)
	if cur := w.list.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, p)
	w.list.Store(&next)
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		cur := w.list.Load()
		if cur == nil {
			return
		}
		var next []*func(ConnEvent)
		for _, q := range *cur {
			if q != p {
				next = append(next, q)
			}
		}
		w.list.Store(&next)
	}
}

// notify calls every watcher with ev.
func (w *connWatchers) notify(ev ConnEvent) {
	if l := w.list.Load(); l != nil {
		for _, fn := range *l {
			(*fn)(ev)
		}
	}
}

// admitted records that s was admitted and tells the watchers. Admit.
func (s *Session) admitted() {
	if s.detached || !s.admit.CompareAndSwap(false, true) {
		return
	}
	s.b.connWatch.notify(ConnEvent{Session: s})
}

// closedEvent tells the watchers an admitted session is gone. Close.
func (s *Session) closedEvent(cc *ClosedConn) {
	if s.admit.Load() {
		s.b.connWatch.notify(ConnEvent{Session: s, Closed: cc})
	}
}

// ConnSnapshot copies the session as monitoring sees it (no
// subscriptions). Any goroutine.
func (s *Session) ConnSnapshot() ConnSnapshot { return s.snapshot(false) }

// Internal returns an in-process client of busbar's own services (the
// system account's responder, say) in account: it acts with full
// permissions there, and it is not a connection: not counted, not listed
// in /connz, never announced to WatchConns, left alone by Reload and
// lame duck mode. Closed by Shutdown, or by its Close.
func (b *Broker) Internal(name, account string) (*Local, error) {
	id := &auth.Identity{Name: name, Account: account}
	l := newLocal(b)
	s, err := b.Connect(l, id, ConnectOptions{Transport: "inprocess", ConnType: auth.ConnInProcess, Name: name, Remote: "in-process", Detached: true})
	if err != nil {
		return nil, err
	}
	l.sess = s
	return l, nil
}
