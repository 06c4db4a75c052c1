package packet

import (
	"bytes"
	"fmt"
)

// reset empties the scratch slices; called at the start of every decode.
func (d *Decoder) reset() {
	d.users, d.subIDs, d.subs, d.filters, d.codes = d.users[:0], d.subIDs[:0], d.subs[:0], d.filters[:0], d.codes[:0]
}

// body checks the fixed header of buf (one whole packet, as framed by
// Frame) against type t and returns the flags and the variable header
// plus payload.
func body(buf []byte, t Type) (flags byte, b []byte, err error) {
	if len(buf) < 2 {
		return 0, nil, fmt.Errorf("%w: %v shorter than a fixed header", MalformedPacket, t)
	}
	if Type(buf[0]>>4) != t {
		return 0, nil, fmt.Errorf("%w: %v where %v was expected", ProtocolError, Type(buf[0]>>4), t)
	}
	flags = buf[0] & 0x0F
	switch t {
	case Publish:
	case Pubrel, Subscribe, Unsubscribe:
		if flags != 0x02 {
			// [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
			return 0, nil, fmt.Errorf("%w: %v fixed header flags %#x, must be 0x2 [MQTT-2.2.2-2]", MalformedPacket, t, flags)
		}
	default:
		if flags != 0 {
			return 0, nil, fmt.Errorf("%w: %v fixed header flags %#x, must be 0 [MQTT-2.2.2-1]", MalformedPacket, t, flags)
		}
	}
	rem, w, err := readVarint(buf[1:])
	if err != nil {
		return 0, nil, err
	}
	if 1+w+rem != len(buf) {
		return 0, nil, fmt.Errorf("%w: remaining length %d, buffer holds %d", MalformedPacket, rem, len(buf)-1-w)
	}
	return flags, buf[1+w:], nil
}

func trailing(t Type, b []byte) error {
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes past the end of %v", MalformedPacket, len(b), t)
	}
	return nil
}

// Decode decodes any packet. v is the connection's version (CONNECT
// carries its own). See Packet and Decoder for what the result points to.
func (d *Decoder) Decode(buf []byte, v Version) (Packet, error) {
	var p Packet
	var err error
	if len(buf) == 0 {
		return p, fmt.Errorf("%w: empty packet", MalformedPacket)
	}
	p.Type = Type(buf[0] >> 4)
	switch p.Type {
	case Connect:
		p.Connect, err = d.DecodeConnect(buf)
	case Connack:
		p.Connack, err = d.DecodeConnack(buf, v)
	case Publish:
		p.Publish, err = d.DecodePublish(buf, v)
	case Puback, Pubrec, Pubrel, Pubcomp:
		p.Ack, err = d.DecodeAck(buf, v)
	case Subscribe:
		p.Subscribe, err = d.DecodeSubscribe(buf, v)
	case Suback:
		p.Suback, err = d.DecodeSuback(buf, v)
	case Unsubscribe:
		p.Unsubscribe, err = d.DecodeUnsubscribe(buf, v)
	case Unsuback:
		p.Suback, err = d.DecodeUnsuback(buf, v)
	case Pingreq, Pingresp:
		err = DecodePing(buf)
	case Disconnect:
		p.Disconnect, err = d.DecodeDisconnect(buf, v)
	case Auth:
		p.Auth, err = d.DecodeAuth(buf, v)
	default:
		// Type 0 is reserved (3.1.1 §2.2.1, 5.0 §2.1.2), as is 15 in 3.1.1.
		err = fmt.Errorf("%w: reserved packet type 0", MalformedPacket)
	}
	return p, err
}

// DecodeConnect decodes CONNECT (3.1.1 §3.1, 5.0 §3.1). For an unknown
// protocol name or level the error wraps UnsupportedProtocolVersion and
// the packet is returned with ProtocolName and Version set, so the server
// can answer CONNACK 0x01 (3.1.1) or 0x84 (5.0) [MQTT-3.1.2-1]
// [MQTT-3.1.2-2]; for other errors the packet is nil.
func (d *Decoder) DecodeConnect(buf []byte) (*ConnectPacket, error) {
	d.reset()
	_, b, err := body(buf, Connect)
	if err != nil {
		return nil, err
	}
	p := &d.connect
	*p = ConnectPacket{}
	if p.ProtocolName, b, err = readString(b); err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: CONNECT variable header truncated", MalformedPacket)
	}
	p.Version = Version(b[0])
	if !(bytes.Equal(p.ProtocolName, []byte("MQTT")) && (p.Version == V311 || p.Version == V5)) &&
		!(bytes.Equal(p.ProtocolName, []byte("MQIsdp")) && p.Version == V31) {
		return p, fmt.Errorf("%w: protocol %q level %d [MQTT-3.1.2-1] [MQTT-3.1.2-2]", UnsupportedProtocolVersion, p.ProtocolName, p.Version)
	}
	flags := b[1]
	p.KeepAlive = uint16(b[2])<<8 | uint16(b[3])
	b = b[4:]
	if err := p.setFlags(flags); err != nil {
		return nil, err
	}
	if p.Version == V5 {
		if b, err = d.decodeProps(b, &p.Props, allowConnect); err != nil {
			return nil, err
		}
		if _, ok := p.Props.AuthData(); ok && !p.Props.Has(PropAuthMethod) {
			return nil, fmt.Errorf("%w: authentication data without a method", ProtocolError) // 5.0 §3.1.2.11.10
		}
	}
	if p.ClientID, b, err = readString(b); err != nil {
		return nil, err
	}
	if p.WillFlag {
		if p.Version == V5 {
			if b, err = d.decodeProps(b, &p.WillProps, allowWill); err != nil {
				return nil, err
			}
		}
		if p.WillTopic, b, err = readString(b); err != nil {
			return nil, err
		}
		if p.WillPayload, b, err = readBinary(b); err != nil {
			return nil, err
		}
	}
	if p.UsernameFlag {
		if p.Username, b, err = readString(b); err != nil {
			return nil, err
		}
	}
	if p.PasswordFlag {
		if p.Password, b, err = readBinary(b); err != nil {
			return nil, err
		}
	}
	if err := trailing(Connect, b); err != nil {
		return nil, err
	}
	return p, nil
}

// setFlags checks and sets the CONNECT flags byte.
func (p *ConnectPacket) setFlags(f byte) error {
	if f&0x01 != 0 {
		return fmt.Errorf("%w: CONNECT reserved flag set [MQTT-3.1.2-3]", MalformedPacket)
	}
	p.CleanStart = f&0x02 != 0
	p.WillFlag = f&0x04 != 0
	p.WillQoS = f >> 3 & 0x03
	p.WillRetain = f&0x20 != 0
	p.PasswordFlag = f&0x40 != 0
	p.UsernameFlag = f&0x80 != 0
	switch {
	case !p.WillFlag && p.WillQoS != 0:
		return fmt.Errorf("%w: will QoS %d without a will [MQTT-3.1.2-11] [MQTT-3.1.2-13]", MalformedPacket, p.WillQoS)
	case !p.WillFlag && p.WillRetain:
		return fmt.Errorf("%w: will retain without a will [MQTT-3.1.2-15] [MQTT-3.1.2-13]", MalformedPacket)
	case p.WillQoS == 3:
		return fmt.Errorf("%w: will QoS 3 [MQTT-3.1.2-14] [MQTT-3.1.2-12]", MalformedPacket)
	case p.Version != V5 && p.PasswordFlag && !p.UsernameFlag:
		return fmt.Errorf("%w: password without a user name [MQTT-3.1.2-22]", MalformedPacket)
	}
	return nil
}

// DecodeConnack decodes CONNACK (3.1.1 §3.2, 5.0 §3.2).
func (d *Decoder) DecodeConnack(buf []byte, v Version) (*ConnackPacket, error) {
	d.reset()
	_, b, err := body(buf, Connack)
	if err != nil {
		return nil, err
	}
	p := &d.connack
	*p = ConnackPacket{}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: CONNACK truncated", MalformedPacket)
	}
	if b[0]&^1 != 0 {
		return nil, fmt.Errorf("%w: CONNACK reserved flags %#x", MalformedPacket, b[0])
	}
	p.SessionPresent, p.Code, b = b[0] == 1, Code(b[1]), b[2:]
	if v != V5 && p.Code > V311NotAuthorized {
		return nil, fmt.Errorf("%w: reserved CONNACK return code %#x", MalformedPacket, byte(p.Code)) // 3.1.1 §3.2.2.3
	}
	if v == V5 {
		if err := checkCode(Connack, p.Code); err != nil {
			return nil, err
		}
		if b, err = d.decodeProps(b, &p.Props, allowConnack); err != nil {
			return nil, err
		}
	}
	if err := trailing(Connack, b); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodePublish decodes PUBLISH (3.1.1 §3.3, 5.0 §3.3). Topic and Payload
// alias buf. Topic syntax (ValidTopicName) and Topic Alias resolution are
// the session layer's.
func (d *Decoder) DecodePublish(buf []byte, v Version) (*PublishPacket, error) {
	d.reset()
	flags, b, err := body(buf, Publish)
	if err != nil {
		return nil, err
	}
	p := &d.publish
	*p = PublishPacket{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0}
	if p.QoS == 3 {
		return nil, fmt.Errorf("%w: PUBLISH QoS 3 [MQTT-3.3.1-4]", MalformedPacket)
	}
	if p.Dup && p.QoS == 0 {
		return nil, fmt.Errorf("%w: DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]", MalformedPacket)
	}
	if p.Topic, b, err = readString(b); err != nil {
		return nil, err
	}
	if p.QoS > 0 {
		if p.PacketID, b, err = readU16(b); err != nil {
			return nil, err
		}
		if p.PacketID == 0 {
			return nil, fmt.Errorf("%w: PUBLISH QoS %d with packet identifier 0 [MQTT-2.3.1-1] [MQTT-2.2.1-3]", MalformedPacket, p.QoS)
		}
	}
	if v == V5 {
		if b, err = d.decodeProps(b, &p.Props, allowPublish); err != nil {
			return nil, err
		}
	}
	if len(b) > 0 {
		p.Payload = b
	}
	return p, nil
}

// DecodeAck decodes PUBACK, PUBREC, PUBREL or PUBCOMP (3.1.1 §3.4-3.7,
// 5.0 §3.4-3.7); PUBREL's flags must be 0b0010 [MQTT-3.6.1-1]. A 5.0 ack
// with remaining length 2 has Code Success [MQTT-3.4.2-1].
func (d *Decoder) DecodeAck(buf []byte, v Version) (*AckPacket, error) {
	d.reset()
	if len(buf) == 0 {
		return nil, fmt.Errorf("%w: empty packet", MalformedPacket)
	}
	t := Type(buf[0] >> 4)
	if t < Puback || t > Pubcomp {
		return nil, fmt.Errorf("%w: %v is not an acknowledgement", ProtocolError, t)
	}
	_, b, err := body(buf, t)
	if err != nil {
		return nil, err
	}
	p := &d.ack
	*p = AckPacket{Type: t}
	if p.PacketID, b, err = readU16(b); err != nil {
		return nil, err
	}
	if v == V5 && len(b) > 0 {
		p.Code, b = Code(b[0]), b[1:]
		if err := checkCode(t, p.Code); err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if b, err = d.decodeProps(b, &p.Props, allowAck); err != nil {
				return nil, err
			}
		}
	}
	if err := trailing(t, b); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodeSubscribe decodes SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8). Filter syntax
// (ValidTopicFilter) and shared subscriptions are the session layer's.
func (d *Decoder) DecodeSubscribe(buf []byte, v Version) (*SubscribePacket, error) {
	d.reset()
	_, b, err := body(buf, Subscribe)
	if err != nil {
		return nil, err
	}
	p := &d.subscribe
	*p = SubscribePacket{}
	if p.PacketID, b, err = packetID(Subscribe, b); err != nil {
		return nil, err
	}
	if v == V5 {
		if b, err = d.decodeProps(b, &p.Props, allowSub); err != nil {
			return nil, err
		}
	}
	for len(b) > 0 {
		var s Subscription
		if s.Filter, b, err = readString(b); err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: SUBSCRIBE filter without options", MalformedPacket)
		}
		if err := s.setOptions(b[0], v); err != nil {
			return nil, err
		}
		b = b[1:]
		d.subs = append(d.subs, s)
	}
	if len(d.subs) == 0 {
		return nil, fmt.Errorf("%w: SUBSCRIBE with no topic filter [MQTT-3.8.3-3] [MQTT-3.8.3-2]", ProtocolError)
	}
	p.Subs = d.subs
	return p, nil
}

// setOptions checks and sets the subscription options byte. 3.1.1: QoS 3
// or a reserved bit is malformed ([MQTT-3-8.3-4], numbered so in the
// spec). 5.0: a reserved bit is malformed [MQTT-3.8.3-5]; QoS 3 and Retain
// Handling 3 are protocol errors (§3.8.3.1).
func (s *Subscription) setOptions(o byte, v Version) error {
	s.QoS = o & 0x03
	if v != V5 {
		if s.QoS == 3 {
			return fmt.Errorf("%w: subscription QoS 3 [MQTT-3-8.3-4]", MalformedPacket)
		}
		if o&^0x03 != 0 {
			return fmt.Errorf("%w: subscription options reserved bits %#x [MQTT-3.8.3-4]", MalformedPacket, o)
		}
		return nil
	}
	if o&0xC0 != 0 {
		return fmt.Errorf("%w: subscription options reserved bits %#x [MQTT-3.8.3-5]", MalformedPacket, o)
	}
	if s.QoS == 3 {
		return fmt.Errorf("%w: subscription maximum QoS 3", ProtocolError) // 5.0 §3.8.3.1
	}
	s.NoLocal, s.RetainAsPublished, s.RetainHandling = o&0x04 != 0, o&0x08 != 0, o>>4&0x03
	if s.RetainHandling == 3 {
		return fmt.Errorf("%w: retain handling 3", ProtocolError)
	}
	return nil
}

// packetID reads a packet identifier that must not be 0 (SUBSCRIBE,
// UNSUBSCRIBE, QoS>0 PUBLISH: 3.1.1 [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3]).
func packetID(t Type, b []byte) (uint16, []byte, error) {
	id, b, err := readU16(b)
	if err == nil && id == 0 {
		err = fmt.Errorf("%w: %v with packet identifier 0 [MQTT-2.3.1-1] [MQTT-2.2.1-3]", MalformedPacket, t)
	}
	return id, b, err
}

// DecodeUnsubscribe decodes UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10).
func (d *Decoder) DecodeUnsubscribe(buf []byte, v Version) (*UnsubscribePacket, error) {
	d.reset()
	_, b, err := body(buf, Unsubscribe)
	if err != nil {
		return nil, err
	}
	p := &d.unsubscribe
	*p = UnsubscribePacket{}
	if p.PacketID, b, err = packetID(Unsubscribe, b); err != nil {
		return nil, err
	}
	if v == V5 {
		if b, err = d.decodeProps(b, &p.Props, allowUnsub); err != nil {
			return nil, err
		}
	}
	for len(b) > 0 {
		var f []byte
		if f, b, err = readString(b); err != nil {
			return nil, err
		}
		d.filters = append(d.filters, f)
	}
	if len(d.filters) == 0 {
		return nil, fmt.Errorf("%w: UNSUBSCRIBE with no topic filter [MQTT-3.10.3-2]", ProtocolError)
	}
	p.Filters = d.filters
	return p, nil
}

// DecodeSuback decodes SUBACK (3.1.1 §3.9, 5.0 §3.9).
func (d *Decoder) DecodeSuback(buf []byte, v Version) (*SubackPacket, error) {
	return d.decodeSuback(buf, v, Suback)
}

// DecodeUnsuback decodes UNSUBACK (3.1.1 §3.11: packet id only; 5.0 §3.11).
func (d *Decoder) DecodeUnsuback(buf []byte, v Version) (*SubackPacket, error) {
	return d.decodeSuback(buf, v, Unsuback)
}

func (d *Decoder) decodeSuback(buf []byte, v Version, t Type) (*SubackPacket, error) {
	d.reset()
	_, b, err := body(buf, t)
	if err != nil {
		return nil, err
	}
	p := &d.suback
	*p = SubackPacket{}
	if p.PacketID, b, err = readU16(b); err != nil {
		return nil, err
	}
	if v == V5 {
		if b, err = d.decodeProps(b, &p.Props, allowAck); err != nil {
			return nil, err
		}
	}
	if t == Unsuback && v != V5 {
		if err := trailing(t, b); err != nil {
			return nil, err
		}
		return p, nil
	}
	for _, c := range b {
		if v == V5 {
			if err := checkCode(t, Code(c)); err != nil {
				return nil, err
			}
		} else if t == Suback && c > 2 && c != 0x80 {
			return nil, fmt.Errorf("%w: SUBACK return code %#x [MQTT-3.9.3-2]", ProtocolError, c)
		}
		d.codes = append(d.codes, Code(c))
	}
	if len(d.codes) == 0 {
		return nil, fmt.Errorf("%w: %v without reason codes", ProtocolError, t)
	}
	p.Codes = d.codes
	return p, nil
}

// DecodePing checks a PINGREQ or PINGRESP: flags 0 and no body.
func DecodePing(buf []byte) error {
	if len(buf) == 0 {
		return fmt.Errorf("%w: empty packet", MalformedPacket)
	}
	t := Type(buf[0] >> 4)
	_, b, err := body(buf, t)
	if err != nil {
		return err
	}
	return trailing(t, b)
}

// DecodeDisconnect decodes DISCONNECT (3.1.1 §3.14: no body; 5.0 §3.14:
// remaining length 0 means Normal disconnection).
func (d *Decoder) DecodeDisconnect(buf []byte, v Version) (*DisconnectPacket, error) {
	d.reset()
	_, b, err := body(buf, Disconnect)
	if err != nil {
		return nil, err
	}
	p := &d.disconnect
	*p = DisconnectPacket{}
	if b, err = d.codeProps(b, v, Disconnect, &p.Code, &p.Props, allowDisc); err != nil {
		return nil, err
	}
	if err := trailing(Disconnect, b); err != nil {
		return nil, err
	}
	return p, nil
}

// codeProps reads the optional 5.0 reason code and properties that end
// DISCONNECT and AUTH. A reason code the packet may not carry is a
// protocol error, here and in the other 5.0 decoders.
func (d *Decoder) codeProps(b []byte, v Version, t Type, c *Code, p *Properties, allowed uint64) ([]byte, error) {
	if v != V5 || len(b) == 0 {
		return b, nil
	}
	*c, b = Code(b[0]), b[1:]
	if err := checkCode(t, *c); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return b, nil
	}
	return d.decodeProps(b, p, allowed)
}

// DecodeAuth decodes AUTH (5.0 §3.15; a reserved type in 3.1.1).
func (d *Decoder) DecodeAuth(buf []byte, v Version) (*AuthPacket, error) {
	d.reset()
	if v != V5 {
		return nil, fmt.Errorf("%w: AUTH before MQTT 5.0 (reserved type 15)", MalformedPacket)
	}
	_, b, err := body(buf, Auth)
	if err != nil {
		return nil, err
	}
	p := &d.auth
	*p = AuthPacket{}
	if b, err = d.codeProps(b, v, Auth, &p.Code, &p.Props, allowAuth); err != nil {
		return nil, err
	}
	if err := trailing(Auth, b); err != nil {
		return nil, err
	}
	return p, nil
}
