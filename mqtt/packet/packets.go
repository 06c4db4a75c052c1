// Package packet is busbar's MQTT 3.1.1 and 5.0 codec: framing, in-place
// decoding and append-style encoding of every control packet, with reason
// codes as error values. It does no I/O and keeps no session state.
//
// Byte lifetimes: every []byte a Decoder returns (topics, payloads, client
// ids, properties) is a sub-slice of the buffer passed to Decode, and the
// packet structs and their slices (Subs, Filters, Codes, User,
// SubscriptionIDs) belong to the Decoder. All of it is valid until the
// buffer is reused or the same Decoder decodes the next packet, whichever
// comes first. Copy what escapes. Zero-length fields decode as nil.
//
// Errors from Decode wrap a Code (MalformedPacket, ProtocolError,
// UnsupportedProtocolVersion), so errors.Is tells the caller which CONNACK
// or DISCONNECT reason code to send. Comments and test names carry the
// normative statement ids of the OASIS specifications.
package packet

// ConnectPacket is CONNECT (3.1.1 §3.1, 5.0 §3.1). Version comes from the
// packet itself. WillProps and Props are 5.0 only.
type ConnectPacket struct {
	ProtocolName []byte // "MQTT" ("MQIsdp" for 3.1); AppendConnect fills it in when empty
	Version      Version
	CleanStart   bool // Clean Session in 3.1.1
	KeepAlive    uint16
	ClientID     []byte
	WillFlag     bool
	WillQoS      byte
	WillRetain   bool
	WillTopic    []byte
	WillPayload  []byte
	WillProps    Properties
	UsernameFlag bool
	PasswordFlag bool
	Username     []byte
	Password     []byte
	Props        Properties
}

// ConnackPacket is CONNACK. In 3.1.1 Code is the return code (0x00-0x05);
// AppendConnack maps a 5.0 code through V311ReturnCode for 3.1.1.
type ConnackPacket struct {
	SessionPresent bool
	Code           Code
	Props          Properties
}

// PublishPacket is PUBLISH. PacketID is present only for QoS 1 and 2.
type PublishPacket struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    []byte
	PacketID uint16
	Props    Properties
	Payload  []byte
}

// AckPacket is PUBACK, PUBREC, PUBREL or PUBCOMP, named by Type. Code and
// Props are 5.0 only.
type AckPacket struct {
	Type     Type
	PacketID uint16
	Code     Code
	Props    Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options. The
// options other than QoS are 5.0 only.
type Subscription struct {
	Filter            []byte
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// SubscribePacket is SUBSCRIBE.
type SubscribePacket struct {
	PacketID uint16
	Props    Properties
	Subs     []Subscription
}

// SubackPacket is SUBACK, and UNSUBACK (whose 3.1.1 form has no Codes).
type SubackPacket struct {
	PacketID uint16
	Props    Properties
	Codes    []Code
}

// UnsubscribePacket is UNSUBSCRIBE.
type UnsubscribePacket struct {
	PacketID uint16
	Props    Properties
	Filters  [][]byte
}

// DisconnectPacket is DISCONNECT; 3.1.1 has no body.
type DisconnectPacket struct {
	Code  Code
	Props Properties
}

// AuthPacket is AUTH (5.0 only).
type AuthPacket struct {
	Code  Code
	Props Properties
}

// Packet is any decoded packet: Type, and the one pointer field that
// matches it (none for PINGREQ and PINGRESP). Suback serves SUBACK and
// UNSUBACK. The pointers are the Decoder's own structs.
type Packet struct {
	Type        Type
	Connect     *ConnectPacket
	Connack     *ConnackPacket
	Publish     *PublishPacket
	Ack         *AckPacket
	Subscribe   *SubscribePacket
	Suback      *SubackPacket
	Unsubscribe *UnsubscribePacket
	Disconnect  *DisconnectPacket
	Auth        *AuthPacket
}

// Decoder decodes whole packets in place. The zero value is ready. It
// keeps one struct per packet type and scratch slices, reused by every
// call, so decoding allocates only while the scratch slices grow (the
// first SUBSCRIBE with n filters, the first n user properties, ...).
// Shape: typed methods (DecodePublish, ...) for a session's read loop that
// switches on the type byte itself, and Decode for everything at once.
// A Decoder is not safe for concurrent use; use one per connection.
type Decoder struct {
	connect     ConnectPacket
	connack     ConnackPacket
	publish     PublishPacket
	ack         AckPacket
	subscribe   SubscribePacket
	suback      SubackPacket
	unsubscribe UnsubscribePacket
	disconnect  DisconnectPacket
	auth        AuthPacket

	users   []UserProperty
	subIDs  []uint32
	subs    []Subscription
	filters [][]byte
	codes   []Code
}
