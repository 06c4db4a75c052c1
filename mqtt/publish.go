package mqtt

// PUBLISH (inbound, with topic aliases) and the acknowledgements of
// outbound QoS 1/2 messages.

import (
	"fmt"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

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
	if c.msg == nil { // made on the first PUBLISH: an idle connection holds none
		c.msg = new(broker.Message)
	}
	m := c.msg
	*m = broker.Message{Subject: c.subj, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, MQTT: true}
	var x *msgExt
	if c.v == packet.V5 && p.Props.HasMessageProps() {
		x = newMsgExt(&p.Props, time.Now())
		m.Ext = x
	}
	logged := p.QoS > 0 && c.srv.plog != nil // a shared store's publish log (publog.go)
	if logged {
		m.Ext = extWithID(x, c.srv.nextLogID())
	}
	m.Borrow()
	c.bs.CountIn(len(p.Payload)) // received, allowed or not
	l := c.recentLog()
	seq := l.reserve(c.tc.LastRead())
	_, err := c.bs.Publish(&c.batch, m)
	l.fill(seq, m, err == nil)
	if err == nil && logged {
		// Past the gate: logged before its PUBACK/PUBREC.
		sm := storeMessage(m, p.QoS, p.Retain)
		sm.Payload = append([]byte(nil), sm.Payload...) // m is borrowed; the write may be resent
		if lerr := c.srv.plog.LogPublish(c.bs.Account(), c.sess.key, &sm); lerr != nil {
			c.Close(fmt.Errorf("%w: store: %w", packet.UnspecifiedError, lerr))
		}
	}
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
