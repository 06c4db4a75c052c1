package packet

import (
	"encoding/binary"
	"fmt"
)

// PropID is an MQTT 5.0 property identifier (5.0 §2.2.2.2).
type PropID byte

// Property identifiers.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUser                 PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// UserProperty is one User Property (0x26) name/value pair. Decoded pairs
// alias the packet buffer (see Decoder).
type UserProperty struct{ Key, Value []byte }

// Properties holds every MQTT 5.0 property. Presence is a bitmask (Has), so
// a zero-length string property is distinct from an absent one. Scalar and
// string properties are read and written through the accessor pairs
// (X() (value, ok) and SetX); the two repeatable properties are plain
// slices: SubscriptionIDs (more than one only in PUBLISH) and User. An
// empty slice means absent.
//
// Decoded []byte values are sub-slices of the packet buffer, and the two
// slices share the Decoder's scratch arrays: all are valid until the buffer
// is reused or the Decoder decodes its next packet. Copy what must outlive
// that (CloneMessageProps does so for the properties a PUBLISH forwards).
type Properties struct {
	present uint64 // 1<<PropID

	payloadFormat        byte
	requestProblemInfo   byte
	requestResponseInfo  byte
	maximumQoS           byte
	retainAvailable      byte
	wildcardSubAvailable byte
	subIDAvailable       byte
	sharedSubAvailable   byte
	serverKeepAlive      uint16
	receiveMaximum       uint16
	topicAliasMaximum    uint16
	topicAlias           uint16
	messageExpiry        uint32
	sessionExpiry        uint32
	willDelay            uint32
	maximumPacketSize    uint32

	contentType      []byte
	responseTopic    []byte
	correlationData  []byte
	assignedClientID []byte
	authMethod       []byte
	authData         []byte
	responseInfo     []byte
	serverReference  []byte
	reasonString     []byte

	SubscriptionIDs []uint32       // 0x0B, each 1..268,435,455
	User            []UserProperty // 0x26, in packet order
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropID) bool {
	switch id {
	case PropSubscriptionID:
		return len(p.SubscriptionIDs) > 0
	case PropUser:
		return len(p.User) > 0
	}
	return p.present&(1<<id) != 0
}

// Clear removes property id.
func (p *Properties) Clear(id PropID) {
	switch id {
	case PropSubscriptionID:
		p.SubscriptionIDs = nil
	case PropUser:
		p.User = nil
	}
	p.present &^= 1 << id
}

// Reset clears every property.
func (p *Properties) Reset() { *p = Properties{} }

func (p *Properties) set(id PropID) { p.present |= 1 << id }

// Accessors: X returns the value and whether it is present; SetX sets it.

func (p *Properties) PayloadFormat() (byte, bool) { return p.payloadFormat, p.Has(PropPayloadFormat) }
func (p *Properties) SetPayloadFormat(v byte)     { p.payloadFormat = v; p.set(PropPayloadFormat) }
func (p *Properties) MessageExpiry() (uint32, bool) {
	return p.messageExpiry, p.Has(PropMessageExpiry)
}
func (p *Properties) SetMessageExpiry(v uint32)   { p.messageExpiry = v; p.set(PropMessageExpiry) }
func (p *Properties) ContentType() ([]byte, bool) { return p.contentType, p.Has(PropContentType) }
func (p *Properties) SetContentType(v []byte)     { p.contentType = v; p.set(PropContentType) }
func (p *Properties) ResponseTopic() ([]byte, bool) {
	return p.responseTopic, p.Has(PropResponseTopic)
}
func (p *Properties) SetResponseTopic(v []byte) { p.responseTopic = v; p.set(PropResponseTopic) }
func (p *Properties) CorrelationData() ([]byte, bool) {
	return p.correlationData, p.Has(PropCorrelationData)
}
func (p *Properties) SetCorrelationData(v []byte) { p.correlationData = v; p.set(PropCorrelationData) }
func (p *Properties) SessionExpiryInterval() (uint32, bool) {
	return p.sessionExpiry, p.Has(PropSessionExpiry)
}
func (p *Properties) SetSessionExpiryInterval(v uint32) {
	p.sessionExpiry = v
	p.set(PropSessionExpiry)
}
func (p *Properties) AssignedClientID() ([]byte, bool) {
	return p.assignedClientID, p.Has(PropAssignedClientID)
}
func (p *Properties) SetAssignedClientID(v []byte) {
	p.assignedClientID = v
	p.set(PropAssignedClientID)
}
func (p *Properties) ServerKeepAlive() (uint16, bool) {
	return p.serverKeepAlive, p.Has(PropServerKeepAlive)
}
func (p *Properties) SetServerKeepAlive(v uint16) { p.serverKeepAlive = v; p.set(PropServerKeepAlive) }
func (p *Properties) AuthMethod() ([]byte, bool)  { return p.authMethod, p.Has(PropAuthMethod) }
func (p *Properties) SetAuthMethod(v []byte)      { p.authMethod = v; p.set(PropAuthMethod) }
func (p *Properties) AuthData() ([]byte, bool)    { return p.authData, p.Has(PropAuthData) }
func (p *Properties) SetAuthData(v []byte)        { p.authData = v; p.set(PropAuthData) }
func (p *Properties) RequestProblemInfo() (byte, bool) {
	return p.requestProblemInfo, p.Has(PropRequestProblemInfo)
}
func (p *Properties) SetRequestProblemInfo(v byte) {
	p.requestProblemInfo = v
	p.set(PropRequestProblemInfo)
}
func (p *Properties) WillDelayInterval() (uint32, bool) { return p.willDelay, p.Has(PropWillDelay) }
func (p *Properties) SetWillDelayInterval(v uint32)     { p.willDelay = v; p.set(PropWillDelay) }
func (p *Properties) RequestResponseInfo() (byte, bool) {
	return p.requestResponseInfo, p.Has(PropRequestResponseInfo)
}
func (p *Properties) SetRequestResponseInfo(v byte) {
	p.requestResponseInfo = v
	p.set(PropRequestResponseInfo)
}
func (p *Properties) ResponseInfo() ([]byte, bool) { return p.responseInfo, p.Has(PropResponseInfo) }
func (p *Properties) SetResponseInfo(v []byte)     { p.responseInfo = v; p.set(PropResponseInfo) }
func (p *Properties) ServerReference() ([]byte, bool) {
	return p.serverReference, p.Has(PropServerReference)
}
func (p *Properties) SetServerReference(v []byte)  { p.serverReference = v; p.set(PropServerReference) }
func (p *Properties) ReasonString() ([]byte, bool) { return p.reasonString, p.Has(PropReasonString) }
func (p *Properties) SetReasonString(v []byte)     { p.reasonString = v; p.set(PropReasonString) }
func (p *Properties) ReceiveMaximum() (uint16, bool) {
	return p.receiveMaximum, p.Has(PropReceiveMaximum)
}
func (p *Properties) SetReceiveMaximum(v uint16) { p.receiveMaximum = v; p.set(PropReceiveMaximum) }
func (p *Properties) TopicAliasMaximum() (uint16, bool) {
	return p.topicAliasMaximum, p.Has(PropTopicAliasMaximum)
}
func (p *Properties) SetTopicAliasMaximum(v uint16) {
	p.topicAliasMaximum = v
	p.set(PropTopicAliasMaximum)
}
func (p *Properties) TopicAlias() (uint16, bool) { return p.topicAlias, p.Has(PropTopicAlias) }
func (p *Properties) SetTopicAlias(v uint16)     { p.topicAlias = v; p.set(PropTopicAlias) }
func (p *Properties) MaximumQoS() (byte, bool)   { return p.maximumQoS, p.Has(PropMaximumQoS) }
func (p *Properties) SetMaximumQoS(v byte)       { p.maximumQoS = v; p.set(PropMaximumQoS) }
func (p *Properties) RetainAvailable() (byte, bool) {
	return p.retainAvailable, p.Has(PropRetainAvailable)
}
func (p *Properties) SetRetainAvailable(v byte) { p.retainAvailable = v; p.set(PropRetainAvailable) }
func (p *Properties) MaximumPacketSize() (uint32, bool) {
	return p.maximumPacketSize, p.Has(PropMaximumPacketSize)
}
func (p *Properties) SetMaximumPacketSize(v uint32) {
	p.maximumPacketSize = v
	p.set(PropMaximumPacketSize)
}
func (p *Properties) WildcardSubAvailable() (byte, bool) {
	return p.wildcardSubAvailable, p.Has(PropWildcardSubAvailable)
}
func (p *Properties) SetWildcardSubAvailable(v byte) {
	p.wildcardSubAvailable = v
	p.set(PropWildcardSubAvailable)
}
func (p *Properties) SubIDAvailable() (byte, bool) {
	return p.subIDAvailable, p.Has(PropSubIDAvailable)
}
func (p *Properties) SetSubIDAvailable(v byte) { p.subIDAvailable = v; p.set(PropSubIDAvailable) }
func (p *Properties) SharedSubAvailable() (byte, bool) {
	return p.sharedSubAvailable, p.Has(PropSharedSubAvailable)
}
func (p *Properties) SetSharedSubAvailable(v byte) {
	p.sharedSubAvailable = v
	p.set(PropSharedSubAvailable)
}

// msgProps are the PUBLISH properties a server forwards to subscribers
// (5.0 §3.3.2.3): payload format, message expiry, content type, response
// topic, correlation data and user properties.
const msgProps = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
	1<<PropResponseTopic | 1<<PropCorrelationData

// HasMessageProps reports whether any forwarded PUBLISH property is present.
func (p *Properties) HasMessageProps() bool {
	return p.present&msgProps != 0 || len(p.User) > 0
}

// CloneMessageProps returns a copy of the forwarded PUBLISH properties
// (see HasMessageProps) that owns its bytes: one allocation for the
// struct, one for all strings together and one for User. The result
// does not alias p.
func (p *Properties) CloneMessageProps() *Properties {
	c := new(Properties)
	p.CopyMessageProps(c)
	return c
}

// CopyMessageProps sets dst to a copy of the forwarded PUBLISH
// properties that owns its bytes (one allocation for all strings
// together, one for User) and does not alias p.
func (p *Properties) CopyMessageProps(dst *Properties) {
	*dst = Properties{present: p.present & msgProps, payloadFormat: p.payloadFormat, messageExpiry: p.messageExpiry}
	n := len(p.contentType) + len(p.responseTopic) + len(p.correlationData)
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value)
	}
	buf := make([]byte, 0, n)
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		s := len(buf)
		buf = append(buf, b...)
		return buf[s:len(buf):len(buf)]
	}
	dst.contentType, dst.responseTopic, dst.correlationData = cp(p.contentType), cp(p.responseTopic), cp(p.correlationData)
	if len(p.User) > 0 {
		dst.User = make([]UserProperty, len(p.User))
		for i, u := range p.User {
			dst.User[i] = UserProperty{cp(u.Key), cp(u.Value)}
		}
	}
}

// MessagePropsSize is how many bytes the forwarded PUBLISH properties
// hold (their encoded length), for accounting.
func (p *Properties) MessagePropsSize() int {
	c := Properties{present: p.present & msgProps, contentType: p.contentType, responseTopic: p.responseTopic,
		correlationData: p.correlationData, User: p.User}
	return c.size()
}

// AppendMessageProps appends the forwarded PUBLISH properties (see
// HasMessageProps) in their wire form, property length first, as a store
// keeps them; DecodeMessageProps reads them back.
func AppendMessageProps(dst []byte, p *Properties) []byte {
	c := Properties{present: p.present & msgProps, payloadFormat: p.payloadFormat, messageExpiry: p.messageExpiry,
		contentType: p.contentType, responseTopic: p.responseTopic, correlationData: p.correlationData, User: p.User}
	return c.appendProps(dst, c.size())
}

// DecodeMessageProps reads what AppendMessageProps wrote (the properties
// of a will are accepted too) into a Properties that owns its bytes.
// Anything else, or bytes after them, is an error wrapping
// MalformedPacket.
func DecodeMessageProps(b []byte) (*Properties, error) {
	var d Decoder
	var p Properties
	rest, err := d.decodeProps(b, &p, allowWill)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the properties", MalformedPacket, len(rest))
	}
	return p.CloneMessageProps(), nil
}

// Property sets allowed per packet (5.0 §2.2.2.2 table). A property outside
// the set makes the packet malformed.
const (
	allowConnect = 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize |
		1<<PropTopicAliasMaximum | 1<<PropRequestResponseInfo | 1<<PropRequestProblemInfo |
		1<<PropUser | 1<<PropAuthMethod | 1<<PropAuthData
	allowWill = 1<<PropWillDelay | 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropUser
	allowConnack = 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumQoS |
		1<<PropRetainAvailable | 1<<PropMaximumPacketSize | 1<<PropAssignedClientID |
		1<<PropTopicAliasMaximum | 1<<PropReasonString | 1<<PropUser | 1<<PropWildcardSubAvailable |
		1<<PropSubIDAvailable | 1<<PropSharedSubAvailable | 1<<PropServerKeepAlive |
		1<<PropResponseInfo | 1<<PropServerReference | 1<<PropAuthMethod | 1<<PropAuthData
	allowPublish = msgProps | 1<<PropTopicAlias | 1<<PropSubscriptionID | 1<<PropUser
	allowAck     = 1<<PropReasonString | 1<<PropUser // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	allowSub     = 1<<PropSubscriptionID | 1<<PropUser
	allowUnsub   = 1 << PropUser
	allowDisc    = 1<<PropSessionExpiry | 1<<PropReasonString | 1<<PropUser | 1<<PropServerReference
	allowAuth    = 1<<PropAuthMethod | 1<<PropAuthData | 1<<PropReasonString | 1<<PropUser
)

type propKind byte

const (
	kByte propKind = iota + 1
	kU16
	kU32
	kVar
	kStr
	kBin
	kPair
)

var propKinds = [...]propKind{
	PropPayloadFormat: kByte, PropMessageExpiry: kU32, PropContentType: kStr, PropResponseTopic: kStr,
	PropCorrelationData: kBin, PropSubscriptionID: kVar, PropSessionExpiry: kU32, PropAssignedClientID: kStr,
	PropServerKeepAlive: kU16, PropAuthMethod: kStr, PropAuthData: kBin, PropRequestProblemInfo: kByte,
	PropWillDelay: kU32, PropRequestResponseInfo: kByte, PropResponseInfo: kStr, PropServerReference: kStr,
	PropReasonString: kStr, PropReceiveMaximum: kU16, PropTopicAliasMaximum: kU16, PropTopicAlias: kU16,
	PropMaximumQoS: kByte, PropRetainAvailable: kByte, PropUser: kPair, PropMaximumPacketSize: kU32,
	PropWildcardSubAvailable: kByte, PropSubIDAvailable: kByte, PropSharedSubAvailable: kByte,
}

// decodeProps reads a property length and the properties that follow
// into p (reset first), accepting only the ids in allowed. It returns the
// rest of b. User and SubscriptionIDs are appended to d's scratch.
func (d *Decoder) decodeProps(b []byte, p *Properties, allowed uint64) ([]byte, error) {
	*p = Properties{}
	n, w, err := readVarint(b)
	if err != nil {
		return nil, fmt.Errorf("%w: property length", err)
	}
	b = b[w:]
	if n > len(b) {
		return nil, fmt.Errorf("%w: property length %d past the packet end", MalformedPacket, n)
	}
	props, rest := b[:n], b[n:]
	u0, s0 := len(d.users), len(d.subIDs)
	for len(props) > 0 {
		id := PropID(props[0])
		props = props[1:]
		if int(id) >= len(propKinds) || propKinds[id] == 0 || allowed&(1<<id) == 0 {
			// 5.0 §2.2.2.2: an identifier not valid for the packet type is malformed.
			return nil, fmt.Errorf("%w: property 0x%02x not allowed here", MalformedPacket, byte(id))
		}
		if id != PropUser && !(id == PropSubscriptionID && allowed == allowPublish) && p.present&(1<<id) != 0 {
			// Every property but User (and Subscription Identifier in PUBLISH) may appear once.
			return nil, fmt.Errorf("%w: property 0x%02x more than once", ProtocolError, byte(id))
		}
		p.set(id)
		var err error
		if props, err = d.decodeProp(props, p, id); err != nil {
			return nil, err
		}
	}
	p.present &^= 1<<PropUser | 1<<PropSubscriptionID // tracked by the slices
	if len(d.users) > u0 {
		p.User = d.users[u0:len(d.users):len(d.users)]
	}
	if len(d.subIDs) > s0 {
		p.SubscriptionIDs = d.subIDs[s0:len(d.subIDs):len(d.subIDs)]
	}
	return rest, nil
}

// decodeProp reads the value of property id from b.
func (d *Decoder) decodeProp(b []byte, p *Properties, id PropID) ([]byte, error) {
	var (
		u8  byte
		u16 uint16
		u32 uint32
		s   []byte
		err error
	)
	switch propKinds[id] {
	case kByte:
		if len(b) < 1 {
			return nil, fmt.Errorf("%w: property 0x%02x truncated", MalformedPacket, byte(id))
		}
		u8, b = b[0], b[1:]
		if u8 > 1 && id != PropPayloadFormat {
			// 5.0 §3.1.2.11.6-7, §3.2.2.3.4-5, -11..-13: a value other than 0 or 1 is a protocol error.
			return nil, fmt.Errorf("%w: property 0x%02x value %d", ProtocolError, byte(id), u8)
		}
	case kU16:
		if u16, b, err = readU16(b); err != nil {
			return nil, err
		}
		if u16 == 0 && id == PropReceiveMaximum {
			return nil, fmt.Errorf("%w: receive maximum 0", ProtocolError) // 5.0 §3.1.2.11.3
		}
	case kU32:
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: property 0x%02x truncated", MalformedPacket, byte(id))
		}
		u32, b = binary.BigEndian.Uint32(b), b[4:]
		if u32 == 0 && id == PropMaximumPacketSize {
			return nil, fmt.Errorf("%w: maximum packet size 0", ProtocolError) // 5.0 §3.1.2.11.4
		}
	case kVar:
		v, w, err := readVarint(b)
		if err != nil {
			return nil, err
		}
		if v == 0 {
			return nil, fmt.Errorf("%w: subscription identifier 0", ProtocolError) // 5.0 §3.3.2.3.8
		}
		d.subIDs = append(d.subIDs, uint32(v))
		return b[w:], nil
	case kStr:
		if s, b, err = readString(b); err != nil {
			return nil, err
		}
	case kBin:
		if s, b, err = readBinary(b); err != nil {
			return nil, err
		}
	case kPair:
		var k, v []byte
		if k, b, err = readString(b); err != nil {
			return nil, err
		}
		if v, b, err = readString(b); err != nil {
			return nil, err
		}
		d.users = append(d.users, UserProperty{k, v})
		return b, nil
	}
	p.store(id, u8, u16, u32, s)
	return b, nil
}

// store sets the field of property id from the value of its kind.
func (p *Properties) store(id PropID, u8 byte, u16 uint16, u32 uint32, s []byte) {
	switch id {
	case PropPayloadFormat:
		p.payloadFormat = u8
	case PropRequestProblemInfo:
		p.requestProblemInfo = u8
	case PropRequestResponseInfo:
		p.requestResponseInfo = u8
	case PropMaximumQoS:
		p.maximumQoS = u8
	case PropRetainAvailable:
		p.retainAvailable = u8
	case PropWildcardSubAvailable:
		p.wildcardSubAvailable = u8
	case PropSubIDAvailable:
		p.subIDAvailable = u8
	case PropSharedSubAvailable:
		p.sharedSubAvailable = u8
	case PropServerKeepAlive:
		p.serverKeepAlive = u16
	case PropReceiveMaximum:
		p.receiveMaximum = u16
	case PropTopicAliasMaximum:
		p.topicAliasMaximum = u16
	case PropTopicAlias:
		p.topicAlias = u16
	case PropMessageExpiry:
		p.messageExpiry = u32
	case PropSessionExpiry:
		p.sessionExpiry = u32
	case PropWillDelay:
		p.willDelay = u32
	case PropMaximumPacketSize:
		p.maximumPacketSize = u32
	case PropContentType:
		p.contentType = s
	case PropResponseTopic:
		p.responseTopic = s
	case PropCorrelationData:
		p.correlationData = s
	case PropAssignedClientID:
		p.assignedClientID = s
	case PropAuthMethod:
		p.authMethod = s
	case PropAuthData:
		p.authData = s
	case PropResponseInfo:
		p.responseInfo = s
	case PropServerReference:
		p.serverReference = s
	case PropReasonString:
		p.reasonString = s
	}
}

// load returns the value of property id (the one of its kind that applies).
func (p *Properties) load(id PropID) (u8 byte, u16 uint16, u32 uint32, s []byte) {
	switch id {
	case PropPayloadFormat:
		u8 = p.payloadFormat
	case PropRequestProblemInfo:
		u8 = p.requestProblemInfo
	case PropRequestResponseInfo:
		u8 = p.requestResponseInfo
	case PropMaximumQoS:
		u8 = p.maximumQoS
	case PropRetainAvailable:
		u8 = p.retainAvailable
	case PropWildcardSubAvailable:
		u8 = p.wildcardSubAvailable
	case PropSubIDAvailable:
		u8 = p.subIDAvailable
	case PropSharedSubAvailable:
		u8 = p.sharedSubAvailable
	case PropServerKeepAlive:
		u16 = p.serverKeepAlive
	case PropReceiveMaximum:
		u16 = p.receiveMaximum
	case PropTopicAliasMaximum:
		u16 = p.topicAliasMaximum
	case PropTopicAlias:
		u16 = p.topicAlias
	case PropMessageExpiry:
		u32 = p.messageExpiry
	case PropSessionExpiry:
		u32 = p.sessionExpiry
	case PropWillDelay:
		u32 = p.willDelay
	case PropMaximumPacketSize:
		u32 = p.maximumPacketSize
	case PropContentType:
		s = p.contentType
	case PropResponseTopic:
		s = p.responseTopic
	case PropCorrelationData:
		s = p.correlationData
	case PropAssignedClientID:
		s = p.assignedClientID
	case PropAuthMethod:
		s = p.authMethod
	case PropAuthData:
		s = p.authData
	case PropResponseInfo:
		s = p.responseInfo
	case PropServerReference:
		s = p.serverReference
	case PropReasonString:
		s = p.reasonString
	}
	return
}

// size returns the encoded length of the properties, without the
// property length varint.
func (p *Properties) size() int {
	n := 0
	for m := p.present &^ (1<<PropUser | 1<<PropSubscriptionID); m != 0; m &= m - 1 {
		id := PropID(bitIndex(m))
		switch propKinds[id] {
		case kByte:
			n += 2
		case kU16:
			n += 3
		case kU32:
			n += 5
		case kStr, kBin:
			_, _, _, s := p.load(id)
			n += 3 + len(s)
		}
	}
	for _, v := range p.SubscriptionIDs {
		n += 1 + varintLen(int(v))
	}
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Value)
	}
	return n
}

// appendProps appends the property length and the properties (in id order,
// then Subscription Identifiers and User properties in slice order). size
// is p.size().
func (p *Properties) appendProps(dst []byte, size int) []byte {
	dst = appendVarint(dst, size)
	for m := p.present &^ (1<<PropUser | 1<<PropSubscriptionID); m != 0; m &= m - 1 {
		id := PropID(bitIndex(m))
		u8, u16, u32, s := p.load(id)
		dst = append(dst, byte(id))
		switch propKinds[id] {
		case kByte:
			dst = append(dst, u8)
		case kU16:
			dst = binary.BigEndian.AppendUint16(dst, u16)
		case kU32:
			dst = binary.BigEndian.AppendUint32(dst, u32)
		case kStr, kBin:
			dst = appendBytes(dst, s)
		}
	}
	for _, v := range p.SubscriptionIDs {
		dst = appendVarint(append(dst, byte(PropSubscriptionID)), int(v))
	}
	for _, u := range p.User {
		dst = appendBytes(appendBytes(append(dst, byte(PropUser)), u.Key), u.Value)
	}
	return dst
}
