package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// subState is one MQTT subscription (broker.Subscription.Opaque). A
// filter "a/#" is two NATS subscriptions, "a" and "a.>" (nats-server's
// mapping), sharing one subState.
type subState struct {
	filter  string // as the client wrote it (without $share/group/)
	share   string // shared subscription group, or ""
	qos     byte
	noLocal bool
	rap     bool // retain as published
	rh      byte // retain handling
	subID   uint32
	ids     []uint32 // []uint32{subID}, or nil: what a PUBLISH through it carries
	dollar  bool     // the filter starts with a wildcard: skip $-topics [MQTT-4.7.2-1]
	wild    bool     // the filter holds a wildcard (overlap.go)
	nats    [][]byte
	q       []byte // the router queue group of a shared subscription
	bsubs   []*broker.Subscription
	hold    *holdList // new, its live deliveries held until catchUp (recent.go); s.mu
}

// outMsg is a QoS 1 or 2 message sent to the client and not yet fully
// acknowledged, or waiting to be sent.
type outMsg struct {
	m      broker.Message // stable
	queue  []byte         // the shared subscription's queue group, or nil
	qos    byte
	retain bool
	subIDs []uint32 // its subscriptions' identifiers (5.0); shared, never modified
	id     uint16
	seq    uint64 // its Store key (persistent sessions)
	rel    bool   // PUBREC received, PUBREL sent: waiting for PUBCOMP
	sent   bool
	bytes  int64     // counted in the session's qBytes (hold, unhold)
	sentAt time.Time // last (re)send (ack_wait)
}

// session is an MQTT session: it outlives connections when persistent
// ([MQTT-3.1.2-4]). It is the broker.Client its subscriptions deliver to;
// the attached conn, if any, writes to the socket.
type session struct {
	srv   *server
	id    string // the client identifier
	key   string // id in its account: the server's map and the Store (sessionKey)
	owner string // identity name that created it: only it may resume it
	bs    *broker.Session

	mu       sync.Mutex // guards everything below
	conn     *conn
	subs     map[string]*subState // by the client's filter (with $share prefix)
	inflight []*outMsg            // sent, in order, awaiting acks
	queue    []*outMsg            // waiting: client offline or receive maximum reached
	nextID   uint16
	nextSeq  uint64              // Store keys of outbound messages
	qBytes   int64               // what inflight and queue hold (MaxQueuedBytes)
	inQoS2   map[uint16]struct{} // QoS 2 ids received, PUBREL not yet seen
	expiry   time.Duration       // 0: ends with the connection; -1: never
	timer    *time.Timer         // session expiry after disconnect
	will     *will
	ended    bool
	qosSubs  int        // subscriptions granted QoS 1 or 2 (max_ack_pending per session)
	plain    plainIndex // its subscriptions that are not shared (overlap.go)
	sent     pubMark    // the last publish sent once for several subscriptions (overlap.go)
	subsKept bool       // the Store holds the subscriptions: a save keeps them (KeepSubs)
	// suspended: restored from the Store with an identity the
	// Authenticator cannot resolve without credentials; its subscriptions
	// are kept but not in the router until its client comes back.
	suspended bool
}

type will struct {
	m     broker.Message     // stable, MQTT=true
	props *packet.Properties // forwarded properties (5.0), owning their bytes; its expiry counts from publication
	delay time.Duration
	timer *time.Timer
}

var _ broker.Client = (*session)(nil)

// effectiveQoS is the QoS a message is delivered at on a subscription
// granted g: min(publish QoS, granted) for MQTT publishes [MQTT-3.8.4-8];
// a NATS (or in-process) message takes the granted QoS (busbar:
// nats-server downgrades to 0).
func effectiveQoS(m *broker.Message, g byte) byte {
	if !m.MQTT {
		return g
	}
	return min(m.QoS, g)
}

// Deliver is called on the publisher's goroutine. It never blocks.
func (s *session) Deliver(sub *broker.Subscription, m *broker.Message) bool {
	st := sub.Opaque.(*subState)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return true
	}
	if st.hold != nil {
		if !s.matchedElsewhere(st.hold, m) {
			st.hold.add(m)
		}
		return true
	}
	return s.deliverLocked(st, m)
}

// deliverLocked delivers m through st (and, for overlapping
// subscriptions, once for all of them). s.mu held.
func (s *session) deliverLocked(st *subState, m *broker.Message) bool {
	qos, retain, ids := effectiveQoS(m, st.qos), st.rap && m.Retain, st.ids
	if st.share == "" && len(s.plain.wild) > 0 && s.plain.n > 1 {
		// Another subscription of this session may match m too.
		var done bool
		if done, qos, retain, ids = s.overlap(st, m); done {
			return true
		}
	} else if s.excluded(st, m) {
		return true
	}
	if qos == 0 {
		if s.conn == nil {
			s.srv.dropped(dropOffline, s)
			return true
		}
		return s.conn.sendPublish(m, 0, 0, retain, false, ids)
	}
	if !s.admit(m) {
		return true
	}
	om := &outMsg{m: *m.Stable(), qos: qos, retain: retain, subIDs: ids, queue: st.q}
	return s.enqueue(om)
}

// admit reports whether the session may hold a QoS 1/2 message m (its
// bounds and the offline total); if not, m is dropped and counted.
// s.mu held.
func (s *session) admit(m *broker.Message) bool {
	sendNow := s.conn != nil && len(s.queue) == 0 && len(s.inflight) < s.conn.window()
	if r, over := s.overLimit(msgSize(m), sendNow); over {
		s.srv.dropped(r, s)
		return false
	}
	return true
}

// enqueue sends om now if the receive window allows, else queues it; the
// session's bounds were checked (admit). s.mu held.
func (s *session) enqueue(om *outMsg) bool {
	if s.persistent() {
		s.nextSeq++
		om.seq = s.nextSeq
	}
	s.hold(om)
	if s.conn != nil && len(s.queue) == 0 && len(s.inflight) < s.conn.window() {
		return s.send(om)
	}
	s.queue = append(s.queue, om)
	s.storeInflightLocked(om) // kept for the offline session, without a packet id
	return true
}

// send assigns a packet id and writes om. A 5.0 message whose expiry
// passed while it waited is dropped ([MQTT-3.3.2-5]; the time left is
// forwarded, writePublish), and so is one larger than the client's
// Maximum Packet Size (acting as sent, [MQTT-3.1.2-25]). s.mu held,
// s.conn set.
func (s *session) send(om *outMsg) bool {
	if expired(&om.m, time.Now()) {
		s.forget(om, dropExpired)
		return true
	}
	if s.conn.tooLarge(om) {
		s.forget(om, dropTooLarge)
		return true
	}
	if !s.mayReceive(om) {
		return true
	}
	om.id = s.allocID()
	om.sent, om.sentAt = true, time.Now()
	s.inflight = append(s.inflight, om)
	s.armAckLocked(s.conn)
	s.storeInflightLocked(om)
	if g := s.srv.grouped; g != nil && om.seq != 0 {
		// Sent only once its record is on disk: a client must never hold
		// a packet id the broker could forget in a crash (it would take a
		// later message with that id for a duplicate and drop it).
		c, m, qos, id, retain, subIDs := s.conn, &om.m, om.qos, om.id, om.retain, om.subIDs
		g.Durable(func(err error) {
			if err != nil {
				c.Close(fmt.Errorf("%w: store: %w", packet.UnspecifiedError, err))
				return
			}
			if !c.sendPublishNoScratch(m, qos, id, retain, false, subIDs) {
				c.Close(broker.ErrSlowConsumer)
				return
			}
			c.out.Wake()
		})
		return true
	}
	return s.conn.sendPublish(&om.m, om.qos, om.id, om.retain, false, om.subIDs)
}

// allocID returns a packet id not in use by an in-flight message
// ([MQTT-2.3.1-2] / [MQTT-2.2.1-3]). s.mu held.
func (s *session) allocID() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if s.findInflight(s.nextID) < 0 {
			return s.nextID
		}
	}
}

func (s *session) findInflight(id uint16) int {
	for i, om := range s.inflight {
		if om.id == id {
			return i
		}
	}
	return -1
}

// ack handles PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done.
// It reports false when the id is unknown. Read loop.
func (s *session) ack(id uint16, comp bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.findInflight(id)
	if i < 0 || (comp && !s.inflight[i].rel) || (!comp && s.inflight[i].qos != 1) {
		return false
	}
	om := s.inflight[i]
	s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
	s.storeAck(om.seq)
	s.unhold(om)
	s.fill()
	return true
}

// rec handles PUBREC: the next step is PUBREL. It reports false when the
// id is unknown. Read loop.
func (s *session) rec(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.findInflight(id)
	if i < 0 || s.inflight[i].qos != 2 {
		return false
	}
	s.inflight[i].rel = true
	s.storeRelease(s.inflight[i].seq)
	return true
}

// fill moves queued messages into the receive window. s.mu held.
func (s *session) fill() {
	for s.conn != nil && len(s.queue) > 0 && len(s.inflight) < s.conn.window() {
		om := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		if !s.send(om) {
			return
		}
	}
	if len(s.queue) == 0 {
		s.queue = nil
	}
}

// resume attaches c and re-sends what was in flight, in order, with DUP
// set (a PUBREL for those past PUBREC), then the queue ([MQTT-4.4.0-1],
// [MQTT-4.6.0-1]).
func (s *session) resume(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setConnLocked(c)
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.inflight = slices.DeleteFunc(s.inflight, func(om *outMsg) bool { return !om.rel && !s.mayReceive(om) })
	if g := s.srv.grouped; g != nil && s.persistent() && len(s.inflight) > 0 {
		// After the commit that holds these records (some may be new).
		type resend struct {
			m        *broker.Message
			qos      byte
			id       uint16
			rel, ret bool
			subIDs   []uint32
		}
		rs := make([]resend, len(s.inflight))
		for i, om := range s.inflight {
			rs[i] = resend{&om.m, om.qos, om.id, om.rel, om.retain, om.subIDs}
		}
		g.Durable(func(err error) {
			if err != nil {
				return
			}
			for _, r := range rs {
				if r.rel {
					c.write(packet.AppendAck(nil, c.v, &packet.AckPacket{Type: pubrelType, PacketID: r.id}))
				} else {
					c.sendPublishNoScratch(r.m, r.qos, r.id, r.ret, true, r.subIDs)
				}
			}
			c.out.Wake()
		})
	} else {
		for _, om := range s.inflight {
			if om.rel {
				c.sendAck(pubrelType, om.id, 0)
				continue
			}
			c.sendPublish(&om.m, om.qos, om.id, om.retain, true, om.subIDs)
		}
	}
	s.fill()
	c.out.Wake()
}

// Wake flushes the attached connection's writer.
func (s *session) Wake() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.out.Wake()
	}
}

// Close is called by the broker: at shutdown or for a slow consumer it
// closes the attached connection and the session ends with the broker;
// when a reload no longer authorizes the session's identity or moved it to
// another account (auth.ErrNotAuthorized, broker.ErrAccountChanged) the
// session ends too, without its will.
func (s *session) Close(reason error) {
	if revoked(reason) {
		s.mu.Lock()
		s.will = nil
		s.mu.Unlock()
		s.srv.endSession(s)
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Close(reason)
	}
}

// revoked: the configuration no longer lets the identity have this
// connection or session.
func revoked(reason error) bool {
	return errors.Is(reason, auth.ErrNotAuthorized) || errors.Is(reason, broker.ErrAccountChanged)
}

// mayReceive is the way out for a message that waited (queued, in flight
// across a reconnect or a restart): the session's identity must still be
// allowed to receive it. One it may not is dropped, acknowledged in the
// Store and counted. s.mu held.
func (s *session) mayReceive(om *outMsg) bool {
	if s.bs.CanReceive(om.m.Subject, om.queue) {
		return true
	}
	s.storeAck(om.seq)
	s.unhold(om)
	s.srv.denied.Add(1)
	return false
}

// forget drops om before it was sent (not in inflight), for reason r:
// acknowledged in the Store, uncounted, counted as dropped. s.mu held.
func (s *session) forget(om *outMsg, r dropReason) {
	s.storeAck(om.seq)
	s.unhold(om)
	s.srv.dropped(r, s)
}

// Revoked drops the MQTT subscription a reload's permissions took away
// (broker.SubscriptionRevoker): both router subscriptions of "a/#" go.
func (s *session) Revoked(sub *broker.Subscription) {
	st, _ := sub.Opaque.(*subState)
	if st == nil {
		return
	}
	s.mu.Lock()
	for k, v := range s.subs {
		if v == st {
			s.delSubLocked(k)
		}
	}
	s.mu.Unlock()
	for _, b := range st.bsubs {
		s.bs.Unsubscribe(b)
	}
}

// reidentify gives the session the identity its returning client
// authenticated as: current permissions (subscriptions they forbid are
// dropped), and for a session restored without one, its subscriptions
// back in the router. Read loop of the new connection, in attach.
func (s *session) reidentify(id *auth.Identity) error {
	if err := s.bs.Reidentify(id); err != nil {
		return err
	}
	s.mu.Lock()
	susp := s.suspended
	s.suspended = false
	var keys []string
	if susp {
		for k := range s.subs {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.mu.Lock()
		st := s.subs[k]
		s.mu.Unlock()
		if st == nil {
			continue
		}
		if err := s.addSub(k, st, false); err != nil {
			s.mu.Lock()
			s.delSubLocked(k)
			s.mu.Unlock()
			s.srv.b.Logger().Info("mqtt: dropped a restored subscription the identity may not make", "client_id", s.id, "filter", k)
		}
	}
	if susp {
		s.srv.replayLog(s, s.srv.takeReplay(s))
	}
	return nil
}

// detach is called when c's connection ends. The session lives on if it
// is persistent, else it ends. Read loop of c.
func (s *session) detach(c *conn) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	s.setConnLocked(nil)
	exp := s.expiry
	s.mu.Unlock()
	switch {
	case exp == 0:
		s.srv.endSession(s)
	case exp > 0:
		s.mu.Lock()
		s.timer = time.AfterFunc(exp, func() { s.srv.endSessionIfIdle(s) })
		s.mu.Unlock()
	}
}

// deliverRetained sends a retained message to a new subscription with the
// retain flag set ([MQTT-3.3.1-8]). Read loop.
func (s *session) deliverRetained(st *subState, m *broker.Message) {
	qos := min(m.QoS, st.qos)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return
	}
	if expired(m, time.Now()) {
		return // a retained message whose expiry passed is not replayed
	}
	if qos == 0 {
		s.conn.sendPublish(m, 0, 0, true, false, st.ids)
		return
	}
	if !s.admit(m) {
		return
	}
	s.enqueue(&outMsg{m: *m, qos: qos, retain: true, subIDs: st.ids, queue: st.q})
}

// redeliver re-sends, with DUP set and in order, the QoS 1/2 messages of
// a 3.1.1 connection unacknowledged for ack_wait (nats-server's mqtt
// ack_wait). 5.0 forbids re-sending on a live connection
// ([MQTT-4.4.0-1]), so it waits for a reconnect there. Timer goroutine.
func (s *session) redeliver(c *conn, wait time.Duration) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	for _, om := range s.inflight {
		if om.rel || now.Sub(om.sentAt) < wait {
			continue
		}
		om.sentAt = now
		c.sendPublish(&om.m, om.qos, om.id, om.retain, true, om.subIDs)
	}
	c.ackArmed = false
	s.armAckLocked(c) // again while messages are in flight
	s.mu.Unlock()
	c.out.Wake()
}

// received reports whether a QoS 2 PUBLISH with id awaits its PUBREL.
func (s *session) received(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inQoS2[id]
	return ok
}

// receive records a QoS 2 PUBLISH answered with PUBREC.
func (s *session) receive(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inQoS2 == nil {
		s.inQoS2 = make(map[uint16]struct{})
	}
	s.inQoS2[id] = struct{}{}
	s.storeInbound(id, true)
}

// release forgets a QoS 2 id at PUBREL; false when it was unknown.
func (s *session) release(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inQoS2[id]
	delete(s.inQoS2, id)
	if ok {
		s.storeInbound(id, false)
	}
	return ok
}

// drop ends an in-flight message the client refused (5.0 PUBREC >= 0x80).
func (s *session) drop(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.findInflight(id); i >= 0 {
		om := s.inflight[i]
		s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
		s.storeAck(om.seq)
		s.unhold(om)
		s.fill()
	}
}
