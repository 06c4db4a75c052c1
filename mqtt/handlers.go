package mqtt

// Packets after CONNECT: the dispatch, DISCONNECT and the 3.1.1 ack_wait timer.
// PUBLISH and its acknowledgements are in publish.go, SUBSCRIBE and
// UNSUBSCRIBE in subscribe.go.

import (
	"fmt"
	"time"

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

// armAckWait turns on ack_wait redelivery for this connection (3.1.1):
// its timer runs while messages are in flight (armAckLocked), so an idle
// connection holds none.
func (c *conn) armAckWait(wait time.Duration) {
	s := c.sess
	s.mu.Lock()
	c.ackWait = wait
	s.armAckLocked(c)
	s.mu.Unlock()
}

// armAckLocked starts c's ack_wait timer when it has messages in flight
// and the timer is not running; redeliver runs it again while any are
// left. s.mu held.
func (s *session) armAckLocked(c *conn) {
	if c == nil || c.ackWait <= 0 || c.ackArmed || len(s.inflight) == 0 || c.tc.Closing() {
		return
	}
	c.ackArmed = true
	if t := c.ackTimer.Load(); t != nil {
		t.Reset(c.ackWait)
		return
	}
	c.ackTimer.Store(time.AfterFunc(c.ackWait, func() { s.redeliver(c, c.ackWait) }))
}
