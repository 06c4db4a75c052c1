package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/subject"
)

// Handler receives messages of an in-process subscription. m and its
// fields are valid after the call returns too (published payloads are
// immutable), but m itself is reused: keep *m by value, not the pointer.
type Handler func(m *Message)

// Local is an in-process client: it publishes, subscribes and makes
// requests on the broker with no socket and no wire encoding. Handlers of
// one Local run one at a time, in delivery order, on its dispatcher
// goroutine. Safe for concurrent use.
type Local struct {
	b    *Broker
	sess *Session

	pubMu sync.Mutex // serializes publishes: guards batch and scratch
	batch Batch
	msg   Message

	qmu     sync.Mutex // guards queue and pending
	queue   []delivery
	pending int64
	wake    chan struct{}
	idle    atomic.Bool // the dispatcher is (about to be) blocked on wake
	started atomic.Bool
	quit    chan struct{} // closed by Close
	closed  atomic.Bool

	respMu  sync.Mutex // guards the request mux
	inbox   string
	resps   map[string]chan Message
	respSub *Subscription
	nextReq uint64
}

type delivery struct {
	sub *Subscription
	m   Message
}

// localSub is an in-process subscription's state (Subscription.Opaque).
type localSub struct {
	h      Handler
	ch     chan<- *Message
	inline bool // h runs on the publisher's goroutine
}

var _ Client = (*Local)(nil)

// Local connects a new in-process client named name, anonymous with
// full permissions: in-process clients do not authenticate unless the
// host application gives them an identity with LocalAs.
func (b *Broker) Local(name string) (*Local, error) {
	return b.LocalAs(name, nil)
}

// LocalAs connects an in-process client acting as identity id: its
// permissions apply, and IN_PROCESS must be an allowed connection type.
func (b *Broker) LocalAs(name string, id *auth.Identity) (*Local, error) {
	if id != nil && !id.ConnTypes.Allows(auth.ConnInProcess) {
		return nil, ErrConnType
	}
	l := newLocal(b)
	s, err := b.Connect(l, id, ConnectOptions{Transport: "inprocess", ConnType: auth.ConnInProcess, Name: name, Remote: "in-process"})
	if err != nil {
		return nil, err
	}
	if err := s.Admit(id); err != nil { // the identity's max_connections, allow_responses
		s.Close()
		return nil, err
	}
	l.sess = s
	return l, nil
}

func newLocal(b *Broker) *Local {
	return &Local{b: b, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// stringBytes views an immutable string as bytes without copying. The
// result must never be modified.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Publish sends data to subject. data is shared with every subscriber and
// must not be modified afterwards.
func (l *Local) Publish(subj string, data []byte) error {
	return l.publish(stringBytes(subj), nil, nil, data)
}

// PublishMsg sends m (subject, optional reply and NATS header block). Its
// slices must not be modified afterwards.
func (l *Local) PublishMsg(m *Message) error {
	return l.publish(m.Subject, m.Reply, m.Header, m.Payload)
}

func (l *Local) publish(subj, reply, hdr, data []byte) error {
	_, err := l.publishN(subj, reply, hdr, data)
	return err
}

func (l *Local) publishN(subj, reply, hdr, data []byte) (int, error) {
	if l.closed.Load() {
		return 0, ErrSessionClosed
	}
	if len(hdr)+len(data) > l.b.opts.Load().MaxPayload {
		return 0, ErrMaxPayload
	}
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	if !l.sess.Routable(subj) || (reply != nil && !subject.ValidLiteral(reply)) {
		return 0, ErrInvalidSubject
	}
	l.msg = Message{Subject: subj, Reply: reply, Header: hdr, Payload: data}
	l.sess.CountIn(len(hdr) + len(data))
	n, err := l.sess.Publish(&l.batch, &l.msg)
	l.batch.Flush()
	return n, err
}

// Subscribe calls h for each message on subject (wildcards allowed).
func (l *Local) Subscribe(subj string, h Handler) (*Subscription, error) {
	return l.subscribe(subj, "", &localSub{h: h})
}

// QueueSubscribe is Subscribe in a queue group: each message goes to one
// member of the group.
func (l *Local) QueueSubscribe(subj, queue string, h Handler) (*Subscription, error) {
	return l.subscribe(subj, queue, &localSub{h: h})
}

// SubscribeInline calls h on the publisher's goroutine, during Publish,
// with no queue and no hand-off: the fastest path, as nats-server's
// internal subscriptions. h must be quick and must not block; m is valid
// only during the call (it may alias a publisher's read buffer): copy
// what you keep, or keep *m.Stable() by value.
func (l *Local) SubscribeInline(subj string, h Handler) (*Subscription, error) {
	return l.subscribe(subj, "", &localSub{h: h, inline: true})
}

// ChanSubscribe sends each message on subject to ch. A full channel holds
// up the client's dispatcher; past max_pending the client is cut off as a
// slow consumer, as any other client.
func (l *Local) ChanSubscribe(subj string, ch chan<- *Message) (*Subscription, error) {
	return l.subscribe(subj, "", &localSub{ch: ch})
}

func (l *Local) subscribe(subj, queue string, ls *localSub) (*Subscription, error) {
	if l.closed.Load() {
		return nil, ErrSessionClosed
	}
	s := &Subscription{Subject: []byte(subj), Client: l, Opaque: ls}
	if queue != "" {
		if !subject.ValidLiteral([]byte(queue)) {
			return nil, ErrInvalidSubject
		}
		s.Queue = []byte(queue)
	}
	if l.started.CompareAndSwap(false, true) {
		l.b.Go(l.dispatch)
	}
	if err := l.sess.Subscribe(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Unsubscribe removes s.
func (l *Local) Unsubscribe(s *Subscription) { l.sess.Unsubscribe(s) }

// AutoUnsubscribe ends s after n deliveries in total.
func (l *Local) AutoUnsubscribe(s *Subscription, n int64) {
	if !s.SetMax(n) {
		l.sess.Unsubscribe(s)
	}
}

// Flush returns once every message this client published before the
// call has been queued at its subscribers. In process that is already
// true when Publish returns; Flush exists for symmetry with nats.go and
// reports ErrSessionClosed after Close.
func (l *Local) Flush(ctx context.Context) error {
	if l.closed.Load() {
		return ErrSessionClosed
	}
	return ctx.Err()
}

// Request publishes data to subj with a unique reply subject and waits for
// the first reply. With no subscriber it returns ErrNoResponders at once.
func (l *Local) Request(ctx context.Context, subj string, data []byte) (*Message, error) {
	return l.RequestMsg(ctx, &Message{Subject: stringBytes(subj), Payload: data})
}

// RequestMsg is Request with a header block.
func (l *Local) RequestMsg(ctx context.Context, m *Message) (*Message, error) {
	reply, ch, err := l.newRequest()
	if err != nil {
		return nil, err
	}
	defer l.endRequest(reply)
	n, err := l.publishN(m.Subject, []byte(l.inbox+reply), m.Header, m.Payload)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrNoResponders
	}
	select {
	case r := <-ch:
		return &r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// newRequest sets up the reply mux on first use and a waiter for one reply.
func (l *Local) newRequest() (string, chan Message, error) {
	l.respMu.Lock()
	defer l.respMu.Unlock()
	if l.respSub == nil {
		var raw [8]byte
		_, _ = rand.Read(raw[:])
		l.inbox = "_INBOX." + hex.EncodeToString(raw[:]) + "."
		l.resps = make(map[string]chan Message)
		s, err := l.subscribe(l.inbox+"*", "", &localSub{h: l.onReply})
		if err != nil {
			return "", nil, err
		}
		l.respSub = s
	}
	l.nextReq++
	tok := strconv.FormatUint(l.nextReq, 36)
	ch := make(chan Message, 1)
	l.resps[tok] = ch
	return tok, ch, nil
}

func (l *Local) endRequest(tok string) {
	l.respMu.Lock()
	delete(l.resps, tok)
	l.respMu.Unlock()
}

func (l *Local) onReply(m *Message) {
	tok := string(m.Subject[len(l.inbox):])
	l.respMu.Lock()
	ch := l.resps[tok]
	delete(l.resps, tok)
	l.respMu.Unlock()
	if ch != nil {
		ch <- *m
	}
}

// Deliver queues m for the dispatcher. Publisher's goroutine.
func (l *Local) Deliver(s *Subscription, m *Message) bool {
	if ls := s.Opaque.(*localSub); ls.inline {
		ls.h(m)
		return true
	}
	m = m.Stable()
	l.qmu.Lock()
	l.queue = append(l.queue, delivery{sub: s, m: *m})
	l.pending += int64(len(m.Payload) + len(m.Header))
	over := l.pending > l.b.opts.Load().MaxPending
	l.qmu.Unlock()
	return !over
}

// Wake signals the dispatcher, only when it sleeps: a busy dispatcher
// finds the new deliveries on its own, saving a channel operation per
// publish.
func (l *Local) Wake() {
	if !l.idle.Load() || !l.idle.CompareAndSwap(true, false) {
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close disconnects the client; queued messages are dropped.
func (l *Local) Close(reason error) {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	l.sess.Close()
	close(l.quit)
}

// Closed reports whether the client was closed (by Close, a slow-consumer
// cut or broker shutdown).
func (l *Local) Closed() bool { return l.closed.Load() }

// dispatch runs handlers on the client's own goroutine until Close.
func (l *Local) dispatch() {
	var batch []delivery
	for {
		l.qmu.Lock()
		batch, l.queue = l.queue, batch[:0]
		l.pending = 0
		l.qmu.Unlock()
		if len(batch) > 0 {
			if !l.run(batch) {
				return
			}
			clear(batch)
			continue
		}
		// Nothing queued: announce sleep, then look once more so a
		// delivery made before the announcement is not missed.
		l.idle.Store(true)
		l.qmu.Lock()
		empty := len(l.queue) == 0
		l.qmu.Unlock()
		if !empty {
			if !l.idle.CompareAndSwap(true, false) {
				<-l.wake // a Wake took the flag: consume its token
			}
			continue
		}
		select {
		case <-l.wake:
		case <-l.quit:
			return
		}
	}
}

// run hands one batch to handlers and channels; false once closed.
func (l *Local) run(batch []delivery) bool {
	for i := range batch {
		if l.closed.Load() {
			return false
		}
		d := &batch[i]
		ls := d.sub.Opaque.(*localSub)
		if ls.h != nil {
			ls.h(&d.m)
			continue
		}
		m := d.m
		select {
		case ls.ch <- &m:
		case <-l.quit:
			return false
		}
	}
	return true
}

// Publish sends m from the broker's own in-process client. m's slices
// must not be modified afterwards.
func (b *Broker) Publish(m *Message) error {
	l, err := b.system()
	if err != nil {
		return err
	}
	return l.PublishMsg(m)
}

// Subscribe registers h on filter through the broker's own in-process client.
func (b *Broker) Subscribe(filter string, h Handler) (*Subscription, error) {
	l, err := b.system()
	if err != nil {
		return nil, err
	}
	return l.Subscribe(filter, h)
}

// system returns the broker's own in-process client, created on first use.
func (b *Broker) system() (*Local, error) {
	b.sysOnce.Do(func() { b.sys, b.sysErr = b.Local("$SYS") })
	return b.sys, b.sysErr
}
