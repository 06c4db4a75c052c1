package broker

import (
	"math/rand/v2"
	"sync"
)

// Forwarder is a Client that stands for another server (a leaf node link
// to a NATS hub). The router treats it differently from a local client:
//
//   - it gets each publish at most once, through Forward, however many of
//     its subscriptions match: plain reports whether a plain one did, and
//     queues names every queue group it was picked for;
//   - in a queue group a local member is always picked first; the
//     forwarder only when no local member takes the message;
//   - a message that came from a Forwarder (PublishRemote) never goes to
//     any Forwarder: interest learnt from one remote is not offered to
//     another, and nothing is sent back where it came from.
//
// Subscriptions of a Forwarder are its remote's interest; they are not
// reported to interest watchers (WatchInterest).
type Forwarder interface {
	Client
	// Forward sends m to the remote. It runs on the publisher's
	// goroutine, never blocks, and may not keep m or queues past the call
	// (m may be borrowed: see Message). It returns false when the link is
	// over its pending limit: the broker then closes it as a slow consumer.
	Forward(m *Message, plain bool, queues [][]byte) bool
}

// fwdTarget collects what one publish hands to one Forwarder.
type fwdTarget struct {
	f      Forwarder
	plain  bool
	queues [][]byte
}

// isForwarder reports whether sub belongs to a Forwarder.
func isForwarder(sub *Subscription) bool {
	_, ok := sub.Client.(Forwarder)
	return ok
}

// hasForwarder reports whether any subscription of psubs or qsubs belongs
// to a Forwarder (Result.fwd).
func hasForwarder(psubs []*Subscription, qsubs [][]*Subscription) bool {
	for _, s := range psubs {
		if isForwarder(s) {
			return true
		}
	}
	for _, q := range qsubs {
		for _, s := range q {
			if isForwarder(s) {
				return true
			}
		}
	}
	return false
}

// target returns the scratch entry for f among the entries from base on,
// adding one. The pointer is valid until the next call. Publisher
// goroutine of s.
func (s *Session) target(base int, f Forwarder) *fwdTarget {
	for i := base; i < len(s.fwdT); i++ {
		if s.fwdT[i].f == f {
			return &s.fwdT[i]
		}
	}
	if len(s.fwdT) < cap(s.fwdT) {
		s.fwdT = s.fwdT[:len(s.fwdT)+1]
	} else {
		s.fwdT = append(s.fwdT, fwdTarget{})
	}
	t := &s.fwdT[len(s.fwdT)-1]
	t.f, t.plain, t.queues = f, false, t.queues[:0]
	return t
}

// deliverFwd is deliverAll for a result that holds subscriptions of a
// Forwarder (see Forwarder for the rules). Publisher goroutine only.
func (s *Session) deliverFwd(batch *Batch, r *Result, m *Message) int {
	m.fanout = len(r.Psubs) + len(r.Qsubs)
	s.stamp(m)
	_, fromRemote := s.client.(Forwarder)
	base := len(s.fwdT)
	n := s.deliverImports(batch, r, m)
	for _, sub := range r.local {
		if f, ok := sub.Client.(Forwarder); ok {
			if !fromRemote && !sub.closed.Load() {
				s.target(base, f).plain = true
			}
			continue
		}
		if !s.echo && sub.Client == s.client {
			continue
		}
		if s.deliver(batch, sub, m) {
			n++
		}
	}
	for _, q := range r.Qsubs {
		if s.deliverQueueLocal(batch, q, m, !fromRemote, base) {
			n++
		}
	}
	for i := base; i < len(s.fwdT); i++ {
		t := &s.fwdT[i]
		if t.plain {
			n++
		}
		if !t.f.Forward(m, t.plain, t.queues) {
			s.b.stats.slowConsumers.Add(1)
			s.b.log.Warn("slow consumer: leaf node link over its pending limit, closing", "subject", string(m.Subject))
			t.f.Close(ErrSlowConsumer)
		} else {
			batch.add(t.f)
		}
		t.f, t.queues = nil, t.queues[:0]
	}
	s.fwdT = s.fwdT[:base]
	return n
}

// deliverQueueLocal hands m to one member of queue group q: a local
// member (random start, the next one when it refuses), else, when remote
// is set, the first Forwarder met, which is told the group's name.
func (s *Session) deliverQueueLocal(batch *Batch, q []*Subscription, m *Message, remote bool, base int) bool {
	start := 0
	if len(q) > 1 {
		start = rand.IntN(len(q))
	}
	var fw *Subscription
	for i := range q {
		sub := q[(start+i)%len(q)]
		if _, ok := sub.Client.(Forwarder); ok {
			if fw == nil && remote && !sub.closed.Load() {
				fw = sub
			}
			continue
		}
		if !s.echo && sub.Client == s.client {
			continue
		}
		if s.deliver(batch, sub, m) {
			return true
		}
	}
	if fw == nil {
		return false
	}
	t := s.target(base, fw.Client.(Forwarder))
	t.queues = append(t.queues, fw.Queue)
	return true
}

// PublishRemote routes m, received from a remote server by the Forwarder
// owning this session, to local subscribers only: every plain
// subscription, and one local member of each queue group named in queues
// (the groups the remote picked this server for; a message with no
// queues reaches no queue group). Like Publish it is a way in: the link
// session's publish permission (the remote's deny_imports) is checked
// first (ErrPermPublish). It returns the number of deliveries.
// Publisher goroutine only; m may be borrowed.
func (s *Session) PublishRemote(batch *Batch, m *Message, queues [][]byte) (int, error) {
	if !s.CanPublish(m.Subject) {
		return 0, ErrPermPublish
	}
	r := s.match(m.Subject)
	m.fanout = len(r.Psubs) + len(r.Qsubs)
	s.stamp(m)
	n := s.deliverImports(batch, r, m)
	for _, sub := range r.local {
		if isForwarder(sub) {
			continue
		}
		if s.deliver(batch, sub, m) {
			n++
		}
	}
	if len(queues) == 0 {
		return n, nil
	}
	for _, q := range r.Qsubs {
		if !named(queues, q[0].Queue) {
			continue
		}
		if s.deliverQueueLocal(batch, q, m, false, len(s.fwdT)) {
			n++
		}
	}
	return n, nil
}

func named(list [][]byte, q []byte) bool {
	for _, x := range list {
		if string(x) == string(q) {
			return true
		}
	}
	return false
}

// InterestFunc receives a change of an account's aggregated interest:
// subject (a filter) and queue (nil for plain subscriptions) with n, the
// number of local subscriptions now holding that interest (0: gone). For
// plain interest it is called when n goes from 0 to 1 and back; for a
// queue group at every change (the group's weight). It runs with the
// account router's lock held: it must be quick, must not block and must
// not call into the broker. The slices are only valid during the call.
type InterestFunc func(subject, queue []byte, n int)

// interestTable aggregates an account's local subscriptions by subject
// and queue for the watchers. Guarded by the owning sublist's mu.
type interestTable struct {
	counts   map[string]*interestEntry
	watchers map[*InterestWatch]struct{}
}

type interestEntry struct {
	subject, queue []byte
	n              int
}

// InterestWatch is one WatchInterest registration.
type InterestWatch struct {
	router *sublist
	fn     InterestFunc
	once   sync.Once
}

func interestKey(sub *Subscription) string {
	if len(sub.Queue) == 0 {
		return string(sub.Subject)
	}
	return string(sub.Subject) + " " + string(sub.Queue)
}

// changed records sub added (delta 1) or removed (-1). s.mu held for
// writing.
func (t *interestTable) changed(sub *Subscription, delta int) {
	if isForwarder(sub) {
		return
	}
	k := interestKey(sub)
	e := t.counts[k]
	if e == nil {
		if delta < 0 {
			return
		}
		e = &interestEntry{subject: sub.Subject, queue: sub.Queue}
		t.counts[k] = e
	}
	e.n += delta
	if e.n <= 0 {
		delete(t.counts, k)
		e.n = 0
	}
	if len(e.queue) == 0 && !(e.n == 1 && delta > 0) && e.n != 0 {
		return // plain interest: only 0 ↔ 1 matters
	}
	for w := range t.watchers {
		w.fn(e.subject, e.queue, e.n)
	}
}

// WatchInterest reports the local interest of account (""= the global
// one) to fn: every change from now on (see InterestFunc). Subscriptions
// of Forwarders are left out. Call Each on the result for the current
// state, and Stop when done.
func (b *Broker) WatchInterest(account string, fn InterestFunc) *InterestWatch {
	r := b.account(account).router
	w := &InterestWatch{router: r, fn: fn}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watch == nil {
		t := &interestTable{counts: make(map[string]*interestEntry), watchers: make(map[*InterestWatch]struct{})}
		var all []*Subscription
		var walk func(l *level)
		walk = func(l *level) {
			if l == nil {
				return
			}
			visit := func(n *node) {
				if n == nil {
					return
				}
				all = append(all, n.psubs.list...)
				for _, g := range n.qsubs {
					all = append(all, g.list...)
				}
				walk(n.next)
			}
			for _, n := range l.nodes {
				visit(n)
			}
			visit(l.pwc)
			visit(l.fwc)
		}
		walk(r.root)
		for _, sub := range all {
			t.changed(sub, 1)
		}
		r.watch = t
	}
	r.watch.watchers[w] = struct{}{}
	return w
}

// Each calls fn for every current interest (n > 0) while changes are held
// back: a caller that sends fn's output and then the changes reported to
// its InterestFunc sends every change exactly once and in order. fn has
// the same constraints as an InterestFunc.
func (w *InterestWatch) Each(fn InterestFunc) {
	w.router.mu.RLock()
	defer w.router.mu.RUnlock()
	for _, e := range w.router.watch.counts {
		fn(e.subject, e.queue, e.n)
	}
}

// Stop ends the registration. Safe to call more than once.
func (w *InterestWatch) Stop() {
	w.once.Do(func() {
		w.router.mu.Lock()
		delete(w.router.watch.watchers, w)
		w.router.mu.Unlock()
	})
}
