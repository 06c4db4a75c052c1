package mqtt

import (
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// handle dispatches one packet after CONNECT. Read loop.
func (c *conn) handle(raw []byte) error {
	switch t := packet.Type(raw[0] >> 4); t {
	case packet.Publish:
		p, err := c.dec.DecodePublish(raw, c.v)
		if err != nil {
			return err
		}
		return c.onPublish(p)
	case packet.Puback, packet.Pubrec, packet.Pubrel, packet.Pubcomp:
		p, err := c.dec.DecodeAck(raw, c.v)
		if err != nil {
			return err
		}
		return c.onAck(p)
	case packet.Subscribe:
		p, err := c.dec.DecodeSubscribe(raw, c.v)
		if err != nil {
			return err
		}
		return c.onSubscribe(p)
	case packet.Unsubscribe:
		p, err := c.dec.DecodeUnsubscribe(raw, c.v)
		if err != nil {
			return err
		}
		return c.onUnsubscribe(p)
	case packet.Pingreq:
		if len(raw) != 2 || raw[0]&0x0F != 0 {
			return fmt.Errorf("%w: PINGREQ", packet.MalformedPacket)
		}
		c.write(pingresp)
		return nil
	case packet.Disconnect:
		p, err := c.dec.DecodeDisconnect(raw, c.v)
		if err != nil {
			return err
		}
		return c.onDisconnect(p)
	case packet.Connect:
		return errSecondConnect
	default:
		return fmt.Errorf("%w: unexpected %v from a client", packet.ProtocolError, t)
	}
}

var pingresp = []byte{byte(packet.Pingresp) << 4, 0}

// errDisconnected ends the read loop after a DISCONNECT.
var errDisconnected = errors.New("mqtt: client disconnected")

func (c *conn) onDisconnect(p *packet.DisconnectPacket) error {
	c.normal = true
	if c.v == packet.V5 {
		if p.Code == 0x04 { // Disconnect with Will Message
			c.sendWill = true
		}
		if v, ok := p.Props.SessionExpiryInterval(); ok {
			s := c.sess
			s.mu.Lock()
			if s.expiry == 0 && v > 0 { // [MQTT-3.14.2-2]
				s.mu.Unlock()
				return fmt.Errorf("%w: session expiry set at DISCONNECT after 0 at CONNECT", packet.ProtocolError)
			}
			s.expiry = c.srv.boundExpiry(v) // session_expiry holds here too
			s.saveLocked()
			s.mu.Unlock()
		}
	}
	if !c.sendWill {
		c.sess.mu.Lock()
		c.sess.will = nil // [MQTT-3.1.2-10]
		c.sess.mu.Unlock()
	}
	return errDisconnected
}

func (c *conn) onPublish(p *packet.PublishPacket) error {
	if len(p.Payload) > c.maxPayload {
		// As a NATS client's max_payload: 5.0 DISCONNECT 0x95, 3.1.1 close.
		return withReason(fmt.Errorf("%w: a payload of %d bytes, max_payload %d", packet.PacketTooLarge, len(p.Payload), c.maxPayload),
			fmt.Sprintf("a payload of %d bytes is over the server's max_payload (%d)", len(p.Payload), c.maxPayload))
	}
	topic := p.Topic
	if c.v == packet.V5 {
		if a, ok := p.Props.TopicAlias(); ok {
			if a == 0 || int(a) > c.aliasMax { // [MQTT-3.3.2-8/-9]
				return withReason(fmt.Errorf("%w: topic alias %d", packet.TopicAliasInvalid, a), c.aliasReason(a))
			}
			if len(topic) > 0 {
				if err := c.setAlias(a, topic); err != nil {
					return err
				}
			} else if topic = c.aliases[a]; topic == nil {
				return withReason(fmt.Errorf("%w: unknown topic alias %d", packet.ProtocolError, a),
					fmt.Sprintf("topic alias %d was not set on this connection", a))
			}
		}
	}
	if !packet.ValidTopicName(topic) { // [MQTT-3.3.2-2]
		return withReason(fmt.Errorf("%w: %q", packet.TopicNameInvalid, topic), reasonTopicName)
	}
	var err error
	c.subj, err = TopicToSubject(c.subj[:0], topic, false)
	if err != nil || !c.bs.Routable(c.subj) {
		return withReason(fmt.Errorf("%w: %q", packet.TopicNameInvalid, topic), reasonTopicName)
	}
	if p.QoS == 2 && c.sess.received(p.PacketID) {
		// A repeat before PUBREL: PUBREC again, no second delivery [MQTT-4.3.3-9].
		c.sendAck(packet.Pubrec, p.PacketID, 0)
		return nil
	}
	// Unacknowledged: QoS 2 until PUBREL, QoS 1 until its PUBACK leaves
	// (after the commit, with a group-committing store).
	if p.QoS > 0 && c.v == packet.V5 && c.inRecv+int(c.pubacksOwed.Load()) >= int(c.srv.opts.ReceiveMaximum) {
		return c.receiveMaxExceeded() // reason.go
	}
	if c.grouped != nil && p.QoS == 2 {
		c.grouped.Begin() // the routing records and the id: one commit group
		defer c.grouped.End()
	}
	allowed := c.publish(p) == nil // the broker's gate: the publish permission
	if p.QoS == 2 && allowed {
		// Recorded after routing: with a durable store the subscribers'
		// records precede the id in the log, and nothing reaches a
		// subscriber or the publisher (PUBREC) before both are on disk.
		// A crash before that loses neither: the publisher re-sends and
		// the message is routed again; after it, the re-send is known.
		c.sess.receive(p.PacketID)
		c.inRecv++
	}
	code, reason := packet.Success, ""
	if !allowed && c.v == packet.V5 {
		code, reason = packet.NotAuthorized, reasonPublishDenied
	}
	switch p.QoS {
	case 1:
		c.sendAckWhy(packet.Puback, p.PacketID, code, reason)
	case 2:
		c.sendAckWhy(packet.Pubrec, p.PacketID, code, reason)
	}
	return nil
}

// aliasEntryOverhead is what one alias costs besides its topic (a map
// entry), for MaxAliasBytes.
const aliasEntryOverhead = 48

// setAlias maps topic alias a to topic for this connection, counting the
// memory it holds: past MaxAliasBytes the connection ends with
// DISCONNECT 0x97. Read loop.
func (c *conn) setAlias(a uint16, topic []byte) error {
	old, had := c.aliases[a]
	n := c.aliasBytes.Load()
	if !had {
		n += aliasEntryOverhead
	}
	kept := cap(old) >= len(topic)
	if !kept {
		n += int64(len(topic) - cap(old))
	}
	if n > MaxAliasBytes {
		return withReason(fmt.Errorf("%w: topic aliases would hold %d bytes, limit %d", packet.QuotaExceeded, n, MaxAliasBytes),
			fmt.Sprintf("the topics of this connection's topic aliases would pass %d bytes", MaxAliasBytes))
	}
	if c.aliases == nil {
		c.aliases = make(map[uint16][]byte)
	}
	if kept {
		c.aliases[a] = append(old[:0], topic...)
	} else {
		c.aliases[a] = append(make([]byte, 0, len(topic)), topic...)
	}
	c.aliasBytes.Store(n)
	return nil
}

// publish routes an MQTT PUBLISH into the broker, which checks the
// permission and keeps a retained message (broker.ErrPermPublish: refused).
// Live deliveries carry retain 0 unless retain-as-published ([MQTT-3.3.1-9]).
func (c *conn) publish(p *packet.PublishPacket) error {
	m := &c.msg
	*m = broker.Message{Subject: c.subj, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, MQTT: true}
	if c.v == packet.V5 && p.Props.HasMessageProps() {
		m.Ext = newMsgExt(&p.Props, time.Now())
	}
	m.Borrow()
	c.bs.CountIn(len(p.Payload)) // received, allowed or not
	l := c.recentLog()
	seq := l.reserve(c.tc.LastRead())
	_, err := c.bs.Publish(&c.batch, m)
	l.fill(seq, m, err == nil)
	return err
}

// recentLog is the log of the account's recent publishes (recent.go).
// Read loop, after CONNECT.
func (c *conn) recentLog() *recentLog {
	if c.recent == nil {
		c.recent = c.srv.recentFor(c.bs.Account())
	}
	return c.recent
}

func (c *conn) onAck(p *packet.AckPacket) error {
	s := c.sess
	switch p.Type {
	case packet.Puback:
		s.ack(p.PacketID, false)
	case packet.Pubrec:
		if p.Code >= 0x80 { // the client refused it: done
			s.drop(p.PacketID)
			return nil
		}
		if s.rec(p.PacketID) {
			c.sendAck(packet.Pubrel, p.PacketID, 0)
		} else if c.v == packet.V5 {
			c.sendAck(packet.Pubrel, p.PacketID, packet.PacketIDNotFound)
		}
	case packet.Pubcomp:
		s.ack(p.PacketID, true)
	case packet.Pubrel:
		code := packet.Success
		if s.release(p.PacketID) { // the id is new again [MQTT-4.3.3-12]
			c.inRecv = max(c.inRecv-1, 0) // not counted when received before a reconnect
		} else if c.v == packet.V5 {
			code = packet.PacketIDNotFound
		}
		c.sendAck(packet.Pubcomp, p.PacketID, code)
	}
	return nil
}

// onSubscribe handles SUBSCRIBE: one reason code per filter, in order
// ([MQTT-3.8.4-5/-6]); an identical filter replaces the subscription
// ([MQTT-3.8.4-3]); retained messages follow per Retain Handling.
func (c *conn) onSubscribe(p *packet.SubscribePacket) error {
	var subID uint32
	if c.v == packet.V5 {
		if ids := p.Props.SubscriptionIDs; len(ids) > 0 {
			subID = ids[0]
		}
	}
	codes := make([]packet.Code, len(p.Subs))
	var replay, news []*subState
	hold := new(holdList)
	for i := range p.Subs {
		sp := &p.Subs[i]
		st, isNew, code := c.subscribe(sp, subID, hold)
		codes[i] = code
		if st != nil && (st.rh == 0 || st.rh == 1 && isNew) && st.share == "" {
			replay = append(replay, st)
		}
		if st != nil && st.hold == hold {
			news = append(news, st)
		}
	}
	suback := c.suback(p.PacketID, codes) // reason.go
	c.afterDurable(suback, func() { c.replayRetained(replay) })
	if len(news) > 0 { // after SUBACK and retained messages, unless they wait for the Store
		from := max(c.connectRead, c.unsubAt, c.tc.LastRead()-int64(c.srv.recentWindow()))
		c.sess.catchUp(c.recentLog(), hold, news, from, c)
	}
	return nil
}

// replayRetained sends the retained messages of new subscriptions,
// through the broker's way out: the session's account, and only what its
// identity may receive now. Read loop, or a store commit callback.
func (c *conn) replayRetained(replay []*subState) {
	for _, st := range replay {
		c.sess.bs.Retained(st.nats, nil, func(m *broker.Message) {
			if st.dollar && m.Subject[0] == '$' {
				return
			}
			c.sess.deliverRetained(st, m)
		})
	}
}

// afterDurable writes ack (a SUBACK or UNSUBACK), then runs then (nil:
// nothing), once what the packet changed in the Store is on disk: for a
// persistent session on a group-committing Store from the commit
// callback (after this read's earlier acknowledgements, in order), so a
// client never holds an acknowledgement a crash could take back;
// otherwise at once. Read loop.
func (c *conn) afterDurable(ack []byte, then func()) {
	s := c.sess
	s.mu.Lock()
	persistent := s.persistent()
	s.mu.Unlock()
	if c.grouped == nil || !persistent {
		c.write(ack)
		if then != nil {
			then()
		}
		return
	}
	c.flushAcks()
	c.grouped.Durable(func(err error) {
		if err != nil {
			c.Close(fmt.Errorf("%w: store: %w", packet.UnspecifiedError, err))
			return
		}
		if c.tc.Closing() {
			return // gone meanwhile: a replay would reach the session's next connection
		}
		c.out.Write(ack)
		if then != nil {
			then()
		}
		c.out.Wake()
	})
}

// subscribe adds or replaces one subscription and returns its reason code.
func (c *conn) subscribe(sp *packet.Subscription, subID uint32, hold *holdList) (*subState, bool, packet.Code) {
	st, err := newSubState(sp.Filter, sp.QoS, sp.NoLocal, sp.RetainAsPublished, sp.RetainHandling, subID)
	if errors.Is(err, errSharedNoLocal) {
		return nil, false, packet.ProtocolError // [MQTT-3.8.3-4]
	}
	if err != nil {
		return nil, false, c.grantCode(packet.TopicFilterInvalid)
	}
	s := c.sess
	key := string(sp.Filter)
	s.mu.Lock()
	old, existed := s.subs[key]
	acked := s.qosSubs // subscriptions that may hold max_ack_pending messages in flight
	if existed && old.qos > 0 {
		acked-- // replaced
	}
	s.mu.Unlock()
	// As nats-server: each QoS 1/2 subscription may have max_ack_pending
	// messages in flight, and a session's total must fit the 65535 packet
	// ids: past it the subscription is refused.
	if st.qos > 0 && (acked+1)*c.srv.opts.MaxAckPending > 65535 {
		return nil, false, c.grantCode(packet.QuotaExceeded)
	}
	if !existed && st.share == "" {
		st.hold = hold // a new subscription catches up (recent.go)
	}
	if err := s.addSub(key, st, true); err != nil {
		if errors.Is(err, broker.ErrPermSubscribe) {
			return nil, false, c.grantCode(packet.NotAuthorized)
		}
		return nil, false, c.grantCode(packet.UnspecifiedError)
	}
	return st, !existed, packet.Code(st.qos)
}

var errSharedNoLocal = errors.New("mqtt: no-local on a shared subscription")

// newSubState checks and maps one subscription filter (with its
// $share/group/ prefix, if any) to its router filters.
func newSubState(f []byte, qos byte, noLocal, rap bool, rh byte, subID uint32) (*subState, error) {
	filter, share, err := parseShare(f)
	if err != nil {
		return nil, err
	}
	if !packet.ValidTopicFilter(filter) {
		return nil, ErrBadTopic
	}
	if share != "" && noLocal {
		return nil, errSharedNoLocal
	}
	st := &subState{filter: string(filter), share: share, qos: min(qos, 2), noLocal: noLocal, rap: rap,
		rh: rh, subID: subID, dollar: filter[0] == '+' || filter[0] == '#'}
	if subID > 0 {
		st.ids = []uint32{subID}
	}
	subj, err := TopicToSubject(nil, filter, true)
	if err != nil {
		return nil, err
	}
	st.nats = [][]byte{subj}
	if share != "" {
		st.q = []byte("$MQTT_share_" + share)
	}
	if n := len(subj); n >= 2 && subj[n-1] == '>' && subj[n-2] == '.' {
		st.nats = append(st.nats, subj[:n-2]) // "a/#" also matches "a"
	}
	st.wild = isWildFilter(st.nats)
	return st, nil
}

// addSub subscribes st in the router under key, replacing a subscription
// with the same key ([MQTT-3.8.4-3]), and with persist records it in the
// Store (one record, however many the session has).
func (s *session) addSub(key string, st *subState, persist bool) error {
	for _, ns := range st.nats {
		bsub := &broker.Subscription{Subject: ns, Queue: st.q, Client: s, Opaque: st}
		if err := s.bs.Subscribe(bsub); err != nil {
			for _, b := range st.bsubs {
				s.bs.Unsubscribe(b)
			}
			return err
		}
		st.bsubs = append(st.bsubs, bsub)
	}
	s.mu.Lock()
	old := s.setSubLocked(key, st, persist)
	s.mu.Unlock()
	if old != nil && old != st {
		for _, b := range old.bsubs {
			s.bs.Unsubscribe(b)
		}
	}
	return nil
}

// grantCode is a SUBACK failure code: 0x80 in 3.1.1.
func (c *conn) grantCode(code packet.Code) packet.Code {
	if c.v == packet.V5 {
		return code
	}
	return 0x80
}

// parseShare splits "$share/group/filter" ([MQTT-4.8.2-1/-2]).
func parseShare(f []byte) (filter []byte, group string, err error) {
	const pfx = "$share/"
	if len(f) < len(pfx) || string(f[:len(pfx)]) != pfx {
		return f, "", nil
	}
	rest := f[len(pfx):]
	for i, ch := range rest {
		switch ch {
		case '/':
			if i == 0 || i == len(rest)-1 {
				return nil, "", errors.New("mqtt: bad shared subscription")
			}
			return rest[i+1:], string(rest[:i]), nil
		case '+', '#':
			return nil, "", errors.New("mqtt: bad share name")
		}
	}
	return nil, "", errors.New("mqtt: bad shared subscription")
}

func (c *conn) onUnsubscribe(p *packet.UnsubscribePacket) error {
	s := c.sess
	codes := make([]packet.Code, len(p.Filters))
	for i, f := range p.Filters {
		s.mu.Lock()
		st := s.delSubLocked(string(f))
		s.mu.Unlock()
		if st == nil {
			codes[i] = 0x11 // No subscription existed
			continue
		}
		for _, b := range st.bsubs {
			s.bs.Unsubscribe(b)
		}
		c.unsubAt = time.Now().UnixNano() // what it got is not caught up again (recent.go)
	}
	// UNSUBACK even when nothing matched [MQTT-3.10.4-5].
	c.afterDurable(packet.AppendUnsuback(nil, c.v, &packet.SubackPacket{PacketID: p.PacketID, Codes: codes}), nil)
	return nil
}

// armAckWait schedules the next ack_wait redelivery check (3.1.1).
func (c *conn) armAckWait(wait time.Duration) {
	if c.tc.Closing() {
		return
	}
	c.ackTimer.Store(time.AfterFunc(wait, func() {
		c.sess.redeliver(c, wait)
		c.armAckWait(wait)
	}))
}
