package mqtt

// SUBSCRIBE and UNSUBSCRIBE: filters, shared subscriptions, retained
// replay and the acknowledgement after the Store.

import (
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

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
				return nil, "", errBadShare
			}
			return rest[i+1:], string(rest[:i]), nil
		case '+', '#':
			return nil, "", errBadShareName
		}
	}
	return nil, "", errBadShare
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
