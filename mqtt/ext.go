package mqtt

import (
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
)

// msgExt is the Message.Ext of an MQTT 5.0 message: the properties a
// PUBLISH forwards, owning their bytes, and when it expires. The expiry is
// absolute (the Message Expiry Interval counted from when the broker took
// the message), so every delivery, and a restart, forwards the time left
// ([MQTT-3.3.2-6]). Immutable once made; shared by every delivery.
type msgExt struct {
	props   packet.Properties // without Message Expiry: expires holds it
	expires int64             // Unix ns; 0: never
	size    int               // bytes the properties hold (accounting)
	logID   string            // its id in a shared store's publish log, or ""
}

// MessageLogID is the publish log's id of the message (broker.LogIDer).
func (x *msgExt) MessageLogID() string { return x.logID }

// ExtensionName is "mqtt5" (broker.Extension).
func (*msgExt) ExtensionName() string { return "mqtt5" }

var _ broker.ExtStorer = (*msgExt)(nil)

// newMsgExt takes the forwarded properties of p (a PUBLISH's, or a will's
// when it is sent), or returns nil when there are none. now: when the
// message entered the broker.
func newMsgExt(p *packet.Properties, now time.Time) *msgExt {
	if !p.HasMessageProps() {
		return nil
	}
	x := &msgExt{}
	p.CopyMessageProps(&x.props)
	if exp, ok := x.props.MessageExpiry(); ok {
		x.expires = now.Add(time.Duration(exp) * time.Second).UnixNano()
		x.props.Clear(packet.PropMessageExpiry)
	}
	x.size = x.props.MessagePropsSize()
	return x
}

// left is the Message Expiry Interval to forward at now, rounded up;
// false when the message has expired.
func (x *msgExt) left(now time.Time) (uint32, bool) {
	d := x.expires - now.UnixNano()
	if d <= 0 {
		return 0, false
	}
	return uint32((d + int64(time.Second) - 1) / int64(time.Second)), true
}

// expired reports whether m carries an expiry that passed at now.
func expired(m *broker.Message, now time.Time) bool {
	x := extOf(m)
	if x == nil || x.expires == 0 {
		return false
	}
	_, ok := x.left(now)
	return !ok
}

// extOf is m's MQTT extras, decoding them when m came from the Store (a
// retained message loaded at start: broker.StoredExt). nil: none.
func extOf(m *broker.Message) *msgExt {
	switch x := m.Ext.(type) {
	case *msgExt:
		return x
	case broker.StoredExt:
		return extFromStore(x.Props, x.Expires)
	}
	return nil
}

// StoreExt gives the properties in their wire form and the expiry, for
// the Store (broker.ExtStorer).
func (x *msgExt) StoreExt() ([]byte, int64) {
	return packet.AppendMessageProps(nil, &x.props), x.expires
}

// extFromStore rebuilds a message's extras from a store.Message's Props
// and Expires; nil when it had none or they do not decode.
func extFromStore(props []byte, expires int64) *msgExt {
	if len(props) == 0 && expires == 0 {
		return nil
	}
	x := &msgExt{expires: expires}
	if len(props) > 0 {
		p, err := packet.DecodeMessageProps(props)
		if err != nil {
			return x
		}
		x.props = *p
		x.props.Clear(packet.PropMessageExpiry)
		x.size = x.props.MessagePropsSize()
	}
	return x
}

// extWithID is the Message.Ext of a message with the extras x (nil: none)
// and the publish log's id (""): x itself, or the id alone.
func extWithID(x *msgExt, id string) broker.Extension {
	switch {
	case x != nil:
		x.logID = id
		return x
	case id != "":
		return broker.LogID(id)
	}
	return nil
}

// storeMessage is the Store's form of m, delivered at qos.
func storeMessage(m *broker.Message, qos byte, retain bool) store.Message {
	sm := store.Message{Subject: m.Subject, Payload: m.Payload, QoS: qos, Retain: retain}
	if x := extOf(m); x != nil {
		sm.Props, sm.Expires = x.StoreExt()
	}
	sm.ID = broker.LogIDOf(m)
	return sm
}
