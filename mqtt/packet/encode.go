package packet

import "encoding/binary"

// Encoding appends to dst and returns the extended slice, like strconv's
// Append functions: with enough capacity in dst nothing is allocated.
// The packet is not validated; callers pass packets that are valid for v.
// Properties are written only for V5.

// header appends the fixed header.
func header(dst []byte, first byte, rem int) []byte {
	return appendVarint(append(dst, first), rem)
}

// propsLen returns the size of the properties with their length varint
// (0 before 5.0) and the size without it.
func propsLen(v Version, p *Properties) (total, size int) {
	if v != V5 {
		return 0, 0
	}
	size = p.size()
	return varintLen(size) + size, size
}

func appendPropsV(dst []byte, v Version, p *Properties, size int) []byte {
	if v != V5 {
		return dst
	}
	return p.appendProps(dst, size)
}

// AppendConnect appends CONNECT for p.Version (client side). An empty
// ProtocolName is written as "MQTT" ("MQIsdp" for V31). The flags come from
// WillFlag, UsernameFlag and PasswordFlag, not from the fields' lengths.
func AppendConnect(dst []byte, p *ConnectPacket) []byte {
	v := p.Version
	name := p.ProtocolName
	if len(name) == 0 {
		name = []byte("MQTT")
		if v == V31 {
			name = []byte("MQIsdp")
		}
	}
	pt, ps := propsLen(v, &p.Props)
	rem := 2 + len(name) + 4 + pt + 2 + len(p.ClientID)
	var wt, ws int
	var flags byte
	if p.CleanStart {
		flags |= 0x02
	}
	if p.WillFlag {
		wt, ws = propsLen(v, &p.WillProps)
		rem += wt + 2 + len(p.WillTopic) + 2 + len(p.WillPayload)
		flags |= 0x04 | p.WillQoS<<3
		if p.WillRetain {
			flags |= 0x20
		}
	}
	if p.UsernameFlag {
		rem += 2 + len(p.Username)
		flags |= 0x80
	}
	if p.PasswordFlag {
		rem += 2 + len(p.Password)
		flags |= 0x40
	}
	dst = header(dst, byte(Connect)<<4, rem)
	dst = appendBytes(dst, name)
	dst = append(dst, byte(v), flags)
	dst = binary.BigEndian.AppendUint16(dst, p.KeepAlive)
	dst = appendPropsV(dst, v, &p.Props, ps)
	dst = appendBytes(dst, p.ClientID)
	if p.WillFlag {
		dst = appendPropsV(dst, v, &p.WillProps, ws)
		dst = appendBytes(appendBytes(dst, p.WillTopic), p.WillPayload)
	}
	if p.UsernameFlag {
		dst = appendBytes(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBytes(dst, p.Password)
	}
	return dst
}

// AppendConnack appends CONNACK. For 3.1.1 and 3.1 the code goes through
// V311ReturnCode, so a 5.0 code may be passed for every version.
func AppendConnack(dst []byte, v Version, p *ConnackPacket) []byte {
	code := p.Code
	if v != V5 {
		code = V311ReturnCode(code)
	}
	pt, ps := propsLen(v, &p.Props)
	dst = header(dst, byte(Connack)<<4, 2+pt)
	var sp byte
	if p.SessionPresent {
		sp = 1
	}
	dst = append(dst, sp, byte(code))
	return appendPropsV(dst, v, &p.Props, ps)
}

// AppendPublishHeader appends PUBLISH up to the payload, with a remaining
// length that counts len(p.Payload): the caller writes the payload itself
// (by reference, e.g. in net.Buffers). The packet id is written only for
// QoS 1 and 2.
func AppendPublishHeader(dst []byte, v Version, p *PublishPacket) []byte {
	pt, ps := propsLen(v, &p.Props)
	rem := 2 + len(p.Topic) + pt + len(p.Payload)
	first := byte(Publish)<<4 | p.QoS<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	if p.QoS > 0 {
		rem += 2
	}
	dst = header(dst, first, rem)
	dst = appendBytes(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	return appendPropsV(dst, v, &p.Props, ps)
}

// PublishSize is the length of the PUBLISH AppendPublish would write for
// p (fixed header included), without encoding it.
func PublishSize(v Version, p *PublishPacket) int {
	pt, _ := propsLen(v, &p.Props)
	rem := 2 + len(p.Topic) + pt + len(p.Payload)
	if p.QoS > 0 {
		rem += 2
	}
	return 1 + varintLen(rem) + rem
}

// AppendPublish appends the whole PUBLISH, payload included.
func AppendPublish(dst []byte, v Version, p *PublishPacket) []byte {
	return append(AppendPublishHeader(dst, v, p), p.Payload...)
}

// AppendAck appends PUBACK, PUBREC, PUBREL or PUBCOMP (p.Type). In 5.0 the
// shortest form is used: no reason code for Success without properties
// (5.0 §3.4.2.1), no property length without properties.
func AppendAck(dst []byte, v Version, p *AckPacket) []byte {
	first := byte(p.Type) << 4
	if p.Type == Pubrel {
		first |= 0x02 // [MQTT-3.6.1-1]
	}
	return appendCodeProps(dst, first, v, p.PacketID, true, p.Code, &p.Props)
}

// appendCodeProps appends the acks, DISCONNECT and AUTH: an optional
// packet id, then in 5.0 a reason code and properties, each left out when
// it and everything after it is the default.
func appendCodeProps(dst []byte, first byte, v Version, id uint16, hasID bool, c Code, p *Properties) []byte {
	rem := 0
	if hasID {
		rem = 2
	}
	var pt, ps int
	if v == V5 {
		pt, ps = propsLen(v, p)
		switch {
		case ps > 0:
			rem += 1 + pt
		case c != Success:
			rem++
		}
	}
	dst = header(dst, first, rem)
	if hasID {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	if v == V5 && (ps > 0 || c != Success) {
		dst = append(dst, byte(c))
		if ps > 0 {
			dst = p.appendProps(dst, ps)
		}
	}
	return dst
}

// AppendSubscribe appends SUBSCRIBE (client side). The 5.0 options are
// written only for V5.
func AppendSubscribe(dst []byte, v Version, p *SubscribePacket) []byte {
	pt, ps := propsLen(v, &p.Props)
	rem := 2 + pt
	for i := range p.Subs {
		rem += 3 + len(p.Subs[i].Filter)
	}
	dst = header(dst, byte(Subscribe)<<4|0x02, rem) // [MQTT-3.8.1-1]
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	dst = appendPropsV(dst, v, &p.Props, ps)
	for i := range p.Subs {
		s := &p.Subs[i]
		o := s.QoS
		if v == V5 {
			if s.NoLocal {
				o |= 0x04
			}
			if s.RetainAsPublished {
				o |= 0x08
			}
			o |= s.RetainHandling << 4
		}
		dst = append(appendBytes(dst, s.Filter), o)
	}
	return dst
}

// AppendSuback appends SUBACK, one code per filter in order [MQTT-3.8.4-6].
func AppendSuback(dst []byte, v Version, p *SubackPacket) []byte {
	return appendSuback(dst, v, Suback, p)
}

// AppendUnsuback appends UNSUBACK; in 3.1.1 it carries only the packet id
// and p.Codes is ignored.
func AppendUnsuback(dst []byte, v Version, p *SubackPacket) []byte {
	return appendSuback(dst, v, Unsuback, p)
}

func appendSuback(dst []byte, v Version, t Type, p *SubackPacket) []byte {
	pt, ps := propsLen(v, &p.Props)
	codes := p.Codes
	if t == Unsuback && v != V5 {
		codes = nil
	}
	dst = header(dst, byte(t)<<4, 2+pt+len(codes))
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	dst = appendPropsV(dst, v, &p.Props, ps)
	for _, c := range codes {
		dst = append(dst, byte(c))
	}
	return dst
}

// AppendUnsubscribe appends UNSUBSCRIBE (client side).
func AppendUnsubscribe(dst []byte, v Version, p *UnsubscribePacket) []byte {
	pt, ps := propsLen(v, &p.Props)
	rem := 2 + pt
	for _, f := range p.Filters {
		rem += 2 + len(f)
	}
	dst = header(dst, byte(Unsubscribe)<<4|0x02, rem) // [MQTT-3.10.1-1]
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	dst = appendPropsV(dst, v, &p.Props, ps)
	for _, f := range p.Filters {
		dst = appendBytes(dst, f)
	}
	return dst
}

// AppendPingreq appends PINGREQ.
func AppendPingreq(dst []byte) []byte { return append(dst, byte(Pingreq)<<4, 0) }

// AppendPingresp appends PINGRESP.
func AppendPingresp(dst []byte) []byte { return append(dst, byte(Pingresp)<<4, 0) }

// AppendDisconnect appends DISCONNECT: no body in 3.1.1; in 5.0 the short
// forms for Normal disconnection without properties (5.0 §3.14.2.1).
func AppendDisconnect(dst []byte, v Version, p *DisconnectPacket) []byte {
	return appendCodeProps(dst, byte(Disconnect)<<4, v, 0, false, p.Code, &p.Props)
}

// AppendAuth appends AUTH (5.0 only).
func AppendAuth(dst []byte, p *AuthPacket) []byte {
	return appendCodeProps(dst, byte(Auth)<<4, V5, 0, false, p.Code, &p.Props)
}

// Append appends any packet held by p (as Decode returns it). CONNECT
// uses its own Version.
func Append(dst []byte, v Version, p Packet) []byte {
	switch p.Type {
	case Connect:
		return AppendConnect(dst, p.Connect)
	case Connack:
		return AppendConnack(dst, v, p.Connack)
	case Publish:
		return AppendPublish(dst, v, p.Publish)
	case Puback, Pubrec, Pubrel, Pubcomp:
		return AppendAck(dst, v, p.Ack)
	case Subscribe:
		return AppendSubscribe(dst, v, p.Subscribe)
	case Suback:
		return AppendSuback(dst, v, p.Suback)
	case Unsubscribe:
		return AppendUnsubscribe(dst, v, p.Unsubscribe)
	case Unsuback:
		return AppendUnsuback(dst, v, p.Suback)
	case Pingreq:
		return AppendPingreq(dst)
	case Pingresp:
		return AppendPingresp(dst)
	case Disconnect:
		return AppendDisconnect(dst, v, p.Disconnect)
	case Auth:
		return AppendAuth(dst, p.Auth)
	}
	return dst
}
