package broker

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/subject"
)

// Session is one connected client as the broker tracks it: its identity,
// its subscriptions and its publish path. Broker-owned; created by Connect.
type Session struct {
	detached bool
	b        *Broker
	client   Client
	info     ClientInfo
	echo     bool

	mu     sync.Mutex // guards subs and closed
	subs   map[*Subscription]struct{}
	closed bool

	// Publisher-goroutine state (one reader per session): no lock.
	pubPerm map[string]bool    // permission verdicts by subject, when perms are set
	permID  *auth.Identity     // the identity pubPerm was computed for
	mcache  map[string]*Result // router results, valid for router generation mgen
	mgen    uint64
	hops    int                // forwarding depth across accounts (account.go)
	pubs    uint32             // publishes routed (Message.PublishID)
	fwd     *[maxHops]fwdFrame // forwarding scratch, made on first use
	fwdT    []fwdTarget        // Forwarder targets of the publishes under way (interest.go)

	acc atomic.Pointer[account] // the identity's account: its router is this session's subject space

	resp    atomic.Pointer[replyPerms] // allow_responses; set by Admit before any delivery, replaced by Reload
	userKey string                     // counted against the identity's max_connections

	inMsgs, inBytes atomic.Int64 // written by the publisher, read by Stats

	ident   atomic.Pointer[auth.Identity] // info.Identity, readable without mu
	creds   *auth.Credentials             // what the client presented (Remember); guarded by mu
	vouched bool                          // Vouch: busbar's own client; guarded by mu
	admit   atomic.Bool                   // Admit ran: WatchConns hears of its close (events.go)
}

// sessionCacheMax bounds a session's own match cache.
const sessionCacheMax = 128

// match is Router.Match through the session's lock-free cache: a hit costs
// one atomic load and a map lookup. Publisher goroutine only.
func (s *Session) match(subj []byte) *Result {
	router := s.acc.Load().router
	gen := router.agen.Load()
	if gen != s.mgen || s.mcache == nil {
		if s.mcache == nil {
			s.mcache = make(map[string]*Result)
		} else {
			clear(s.mcache)
		}
		s.mgen = gen
	}
	if r, ok := s.mcache[string(subj)]; ok {
		return r
	}
	r := router.Match(subj)
	if len(s.mcache) < sessionCacheMax {
		s.mcache[string(subj)] = r
	}
	return r
}

// Routable reports whether subj may be published: a valid literal subject.
// A subject this session already routed is known valid without a scan.
// Publisher goroutine only.
func (s *Session) Routable(subj []byte) bool {
	if s.mcache != nil && s.mgen == s.acc.Load().router.agen.Load() {
		if _, ok := s.mcache[string(subj)]; ok {
			return true
		}
	}
	return subject.ValidLiteral(subj)
}

// CountIn records one received message of n bytes for Stats.
// Publisher goroutine.
func (s *Session) CountIn(n int) {
	s.inMsgs.Add(1)
	s.inBytes.Add(int64(n))
}

// ConnectOptions are what a transport knows about a new connection.
type ConnectOptions struct {
	Transport string
	ConnType  auth.ConnType
	Name      string
	Remote    string
	NoEcho    bool // NATS echo=false: never deliver this client's own messages to it
	// Detached marks a session that is not a network connection (an MQTT
	// session kept across connections): not counted against
	// max_connections or in NumConnections.
	Detached bool
}

// AuthRequired reports whether clients must present credentials.
func (b *Broker) AuthRequired() bool { return b.opts.Load().Authenticator != nil }

// Connect registers an authenticated client. id may be nil (anonymous).
func (b *Broker) Connect(c Client, id *auth.Identity, o ConnectOptions) (*Session, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if o.Detached {
		// not a connection: counted by nothing
	} else if max := b.opts.Load().MaxConnections; max > 0 && b.nconns.Add(1) > int64(max) {
		b.nconns.Add(-1)
		return nil, ErrMaxConnections
	} else if max <= 0 {
		b.nconns.Add(1)
	}
	s := &Session{
		b:        b,
		client:   c,
		detached: o.Detached,
		echo:     !o.NoEcho,
		info: ClientInfo{
			ID: b.NextClientID(), Transport: o.Transport, ConnType: o.ConnType,
			Name: o.Name, Remote: o.Remote, Identity: id,
		},
	}
	s.ident.Store(id)
	s.acc.Store(b.account(accountOf(id)))
	b.mu.Lock()
	b.clients[s.info.ID] = s
	b.mu.Unlock()
	return s, nil
}

// ID is the connection id.
func (s *Session) ID() uint64 { return s.info.ID }

// Client is the connection behind the session.
func (s *Session) Client() Client { return s.client }

// SetIdentity records who the client authenticated as (NATS CONNECT
// arrives after the session exists). Read loop only, before any publish
// or subscribe of that identity.
func (s *Session) SetIdentity(id *auth.Identity) {
	s.mu.Lock()
	s.info.Identity = id
	s.ident.Store(id)
	s.pubPerm = nil
	if a := s.b.account(accountOf(id)); a != s.acc.Load() {
		s.acc.Store(a)
		s.mcache = nil // generations of another router
	}
	s.mu.Unlock()
}

func accountOf(id *auth.Identity) string {
	if id == nil {
		return ""
	}
	return id.Account
}

// SetName records the client's name (NATS CONNECT name).
func (s *Session) SetName(name string) {
	s.mu.Lock()
	s.info.Name = name
	s.mu.Unlock()
}

// SetEcho turns delivery of the client's own messages to itself on or off.
// Read loop only.
func (s *Session) SetEcho(on bool) { s.echo = on }

// Snapshot returns a copy of the session's description. Any goroutine.
func (s *Session) Snapshot() ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// perms is read on the read loop, which is the only writer of Identity.
// Reload may replace the identity from another goroutine, hence the
// atomic copy.
func (s *Session) perms() *auth.Permissions {
	if id := s.ident.Load(); id != nil {
		return id.Perms
	}
	return nil
}

// CanPublish checks the identity's publish permission, caching verdicts.
// Publisher goroutine only.
func (s *Session) CanPublish(subj []byte) bool {
	p := s.perms()
	if p == nil {
		return true
	}
	if id := s.ident.Load(); id != s.permID { // Reload changed the identity
		s.pubPerm, s.permID = nil, id
	}
	if v, ok := s.pubPerm[string(subj)]; ok {
		return v || s.replyAllowed(subj)
	}
	v := p.CanPublish(subj)
	if s.pubPerm == nil || len(s.pubPerm) > 1024 {
		s.pubPerm = make(map[string]bool)
	}
	s.pubPerm[string(subj)] = v
	return v || s.replyAllowed(subj)
}

// Subscribe adds sub (whose Client must be this session's) to the router.
func (s *Session) Subscribe(sub *Subscription) error {
	if !subject.ValidFilter(sub.Subject) {
		return ErrInvalidSubject
	}
	if p := s.perms(); p != nil {
		if !p.CanSubscribe(sub.Subject, sub.Queue) {
			return ErrPermSubscribe
		}
		if p.NeedsDeliveryFilter(sub.Subject, sub.Queue) {
			sub.deny.Store(p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSessionClosed
	}
	if max := s.b.opts.Load().MaxSubscriptions; max > 0 && len(s.subs) >= max {
		return ErrMaxSubs
	}
	sub.sess = s // before Insert: publishers read it once they can match sub
	if err := s.acc.Load().router.Insert(sub); err != nil {
		sub.sess = nil
		return err
	}
	if s.subs == nil {
		s.subs = make(map[*Subscription]struct{})
	}
	s.subs[sub] = struct{}{}
	return nil
}

// Unsubscribe removes sub. Removing one already gone is not an error.
func (s *Session) Unsubscribe(sub *Subscription) {
	sub.closed.Store(true)
	s.mu.Lock()
	_, ok := s.subs[sub]
	delete(s.subs, sub)
	s.mu.Unlock()
	if ok {
		_ = s.acc.Load().router.Remove(sub)
	}
}

// NumSubscriptions is the session's subscription count.
func (s *Session) NumSubscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Close removes the session's subscriptions and unregisters it. It does
// not close the Client (the transport does that and then calls Close).
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.releaseUser()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for sub := range subs {
		sub.closed.Store(true)
		_ = s.acc.Load().router.Remove(sub)
	}
	cc := s.closedConn(subs) // monitoring's record (closed.go)
	s.b.mu.Lock()
	delete(s.b.clients, s.info.ID)
	s.b.closedIn.msgs += s.inMsgs.Load()
	s.b.closedIn.bytes += s.inBytes.Load()
	s.b.foldLocked(cc) // totals by transport, closed history (snapshot.go)
	s.b.mu.Unlock()
	if !s.detached {
		s.b.nconns.Add(-1)
	}
	s.closedEvent(cc)
}

// Publish is the way in: every message a session originates (a live
// NATS, MQTT or WebSocket publish, an in-process one, an MQTT will, a
// retained set, a message from a leaf node link) enters the router here.
// It checks the session's identity's publish permission in its account
// (ErrPermPublish: nothing is delivered or retained), records a retained
// message (m.Retain) in the session's account, and routes m to every
// matching subscription, recording touched clients in batch; the caller
// flushes the batch when its read is done. m may be borrowed (see
// Message); m.Subject must be a valid literal (Routable). It returns how
// many deliveries were made. Publisher goroutine only.
func (s *Session) Publish(batch *Batch, m *Message) (int, error) {
	n := s.deliverAll(batch, nil, m) // inlined: one call, as before the gate
	if n < 0 {
		return 0, ErrPermPublish
	}
	return n, nil
}

// CanReceive is the check of the way out for messages that do not come
// straight from a publish (retained replay, a queue drained on resume, a
// message restored from the Store): whether the session's identity may
// now receive a message on the literal subject subj in queue group queue
// (nil: none). Live deliveries are checked when the subscription is made
// and, where it overlaps a deny entry, per delivery. No allocation.
func (s *Session) CanReceive(subj, queue []byte) bool {
	p := s.perms()
	return p == nil || p.CanSubscribe(subj, queue)
}

// Account is the name of the account the session belongs to.
func (s *Session) Account() string { return s.acc.Load().name }

// deliverAll hands m to every subscription of r (forward into another
// account), or with r nil is the gate of Publish: -1 when the session may
// not publish m, else it keeps m if retained and delivers to the
// session's own match.
func (s *Session) deliverAll(batch *Batch, r *Result, m *Message) int {
	if r == nil {
		if s.perms() != nil && !s.CanPublish(m.Subject) { // no call without permissions
			return -1
		}
		if m.Retain {
			s.retain(m)
		}
		r = s.match(m.Subject)
	}
	if r.fwd { // a leaf node link listens (interest.go)
		return s.deliverFwd(batch, r, m)
	}
	m.fanout = len(r.Psubs) + len(r.Qsubs)
	s.stamp(m)
	n := s.deliverImports(batch, r, m)
	for _, sub := range r.local {
		if !s.echo && sub.Client == s.client {
			continue
		}
		if s.deliver(batch, sub, m) {
			n++
		}
	}
	for _, q := range r.Qsubs {
		if s.deliverQueue(batch, q, m) {
			n++
		}
	}
	return n
}

// stamp marks m as this session's next publish (Origin, PublishID).
// Publisher goroutine only.
func (s *Session) stamp(m *Message) {
	s.pubs++
	m.origin, m.pub = s.client, s.pubs
}

// deliverQueue hands m to one member of a queue group, chosen at random;
// if that member refuses (closed, or auto-unsubscribed), the next one.
func (s *Session) deliverQueue(batch *Batch, q []*Subscription, m *Message) bool {
	start := 0
	if len(q) > 1 {
		start = rand.IntN(len(q))
	}
	for i := range q {
		sub := q[(start+i)%len(q)]
		if !s.echo && sub.Client == s.client {
			continue
		}
		if s.deliver(batch, sub, m) {
			return true
		}
	}
	return false
}

// deliverImports forwards m into the accounts whose imports r holds
// and returns how many took it.
func (s *Session) deliverImports(batch *Batch, r *Result, m *Message) int {
	n := 0
	for _, im := range r.imports {
		if !im.sub.closed.Load() && s.forward(batch, im.rt, m) {
			n++
		}
	}
	return n
}

func (s *Session) deliver(batch *Batch, sub *Subscription, m *Message) bool {
	if d := sub.deny.Load(); d != nil && !d.CanReceive(m.Subject, sub.Queue) {
		return false
	}
	ok, last := sub.take()
	if !ok {
		return false
	}
	c := sub.Client
	noteReply(sub, m) // before Deliver: an inline subscriber may answer at once
	if !c.Deliver(sub, m) {
		s.b.stats.slowConsumers.Add(1)
		slowLog(s.b, sub).Warn("slow consumer: pending limit exceeded, closing", "subject", string(sub.Subject))
		c.Close(ErrSlowConsumer)
		return false
	}
	batch.add(c)
	if last {
		s.b.removeSub(sub)
	}
	return true
}

// removeSub drops a subscription whose auto-unsubscribe limit was reached.
func (b *Broker) removeSub(sub *Subscription) {
	if sub.sess != nil {
		sub.sess.Unsubscribe(sub)
		return
	}
	sub.closed.Store(true)
	_ = b.router.Remove(sub)
}

// HasInterest reports whether anything subscribes to subj.
func (b *Broker) HasInterest(subj []byte) bool {
	r := b.router.Match(subj)
	return len(r.Psubs) > 0 || len(r.Qsubs) > 0
}

// DeliverNoResponders sends m (a 503 status message the transport built)
// to the publisher's own subscriptions matching m.Subject (its reply
// inbox), as nats-server does for no_responders. Publisher goroutine only.
func (s *Session) DeliverNoResponders(batch *Batch, m *Message) {
	r := s.acc.Load().router.Match(m.Subject)
	for _, sub := range r.Psubs {
		if sub.Client == s.client {
			s.deliver(batch, sub, m)
			return
		}
	}
}
