package packet

import "fmt"

// The shared byte-fixture table: every packet type of MQTT 3.1.1 and 5.0,
// valid and invalid, each with the spec section or normative statement it
// demonstrates. TestFixtures decodes and re-encodes them, FuzzDecode uses
// them as seeds, and the session layer's tests may borrow them.

// fixture is one packet on the wire.
type fixture struct {
	name     string
	spec     string  // section (§) or normative statement id
	v        Version // connection version (CONNECT carries its own)
	raw      []byte
	want     any   // *ConnectPacket, *PublishPacket, ...; nil for PINGREQ/PINGRESP
	err      error // a Code the error wraps; nil for a valid packet
	noEncode bool  // valid, but the encoder writes another (shorter) form
}

// pk builds a packet: the first byte, the remaining length, then parts
// (a []byte or string as is, a byte, or an int or rune taken as one byte).
func pk(first byte, parts ...any) []byte {
	var body []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			body = append(body, p...)
		case byte:
			body = append(body, p)
		case int:
			body = append(body, byte(p))
		case rune:
			body = append(body, byte(p))
		case string:
			body = append(body, p...)
		default:
			panic(fmt.Sprintf("pk: bad part %T", p))
		}
	}
	n := len(body)
	out := []byte{first}
	for n >= 0x80 {
		out = append(out, byte(n)|0x80)
		n >>= 7
	}
	return append(append(out, byte(n)), body...)
}

// s is a length-prefixed string or binary field.
func s(x string) []byte { return append([]byte{byte(len(x) >> 8), byte(len(x))}, x...) }

// u16 is a two byte integer.
func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// u32 is a four byte integer.
func u32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// props is a property block: its length (one byte: fixtures stay short) and the properties.
func props(parts ...any) []byte {
	b := pk(0, parts...)[1:]
	return b
}

// mk builds Properties with the setters.
func mk(f func(p *Properties)) Properties {
	var p Properties
	f(&p)
	return p
}

func b(x string) []byte { return []byte(x) }

var fixtures = []fixture{
	// ---- CONNECT 3.1.1 / 3.1 ----
	{name: "connect_v311_minimal", spec: "3.1.1 §3.1", v: V311,
		raw:  []byte{0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'c', '1', 'x'},
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V311, CleanStart: true, KeepAlive: 60, ClientID: b("c1x")}},
	{name: "connect_v311_will_user_password", spec: "3.1.1 §3.1.2.5-9 §3.1.3", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0xF6, u16(30), s("id"), s("will/t"), s("bye"), s("user"), s("pw")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V311, CleanStart: true, KeepAlive: 30, ClientID: b("id"),
			WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: b("will/t"), WillPayload: b("bye"),
			UsernameFlag: true, PasswordFlag: true, Username: b("user"), Password: b("pw")}},
	{name: "connect_v311_empty_client_id", spec: "3.1.1 [MQTT-3.1.3-6]", v: V311,
		raw:  pk(0x10, s("MQTT"), 4, 0x02, u16(0), s("")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V311, CleanStart: true}},
	{name: "connect_v31_MQIsdp", spec: "3.1 protocol name MQIsdp level 3", v: V311,
		raw:  pk(0x10, s("MQIsdp"), 3, 0x02, u16(10), s("old")),
		want: &ConnectPacket{ProtocolName: b("MQIsdp"), Version: V31, CleanStart: true, KeepAlive: 10, ClientID: b("old")}},
	{name: "connect_MQTT-3.1.2-1_bad_protocol_name", spec: "[MQTT-3.1.2-1]", v: V311,
		raw: pk(0x10, s("MQTX"), 4, 0x02, u16(0), s("a")), err: UnsupportedProtocolVersion},
	{name: "connect_MQTT-3.1.2-2_level_6", spec: "[MQTT-3.1.2-2]", v: V311,
		raw: pk(0x10, s("MQTT"), 6, 0x02, u16(0), s("a")), err: UnsupportedProtocolVersion},
	{name: "connect_MQTT-3.1.2-2_MQTT_level_3", spec: "[MQTT-3.1.2-2]", v: V311,
		raw: pk(0x10, s("MQTT"), 3, 0x02, u16(0), s("a")), err: UnsupportedProtocolVersion},
	{name: "connect_MQTT-3.1.2-3_reserved_flag", spec: "[MQTT-3.1.2-3]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x03, u16(0), s("a")), err: MalformedPacket},
	{name: "connect_MQTT-2.2.2-1_header_flags", spec: "[MQTT-2.2.2-1] [MQTT-2.1.3-1]", v: V311,
		raw: pk(0x11, s("MQTT"), 4, 0x02, u16(0), s("a")), err: MalformedPacket},
	{name: "connect_MQTT-3.1.2-13_will_qos_without_will", spec: "3.1.1 [MQTT-3.1.2-11] [MQTT-3.1.2-13], 5.0 [MQTT-3.1.2-11]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x0A, u16(0), s("a")), err: MalformedPacket},
	{name: "connect_MQTT-3.1.2-15_will_retain_without_will", spec: "3.1.1 [MQTT-3.1.2-15], 5.0 [MQTT-3.1.2-13]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x22, u16(0), s("a")), err: MalformedPacket},
	{name: "connect_MQTT-3.1.2-14_will_qos_3", spec: "3.1.1 [MQTT-3.1.2-14], 5.0 [MQTT-3.1.2-12]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x1E, u16(0), s("a"), s("t"), s("m")), err: MalformedPacket},
	{name: "connect_MQTT-3.1.2-22_password_without_user", spec: "3.1.1 [MQTT-3.1.2-22]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x42, u16(0), s("a"), s("pw")), err: MalformedPacket},
	{name: "connect_MQTT-1.5.3-2_nul_in_client_id", spec: "3.1.1 [MQTT-1.5.3-2], 5.0 [MQTT-1.5.4-2]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x02, u16(0), s("a\x00b")), err: MalformedPacket},
	{name: "connect_MQTT-1.5.3-1_ill_formed_utf8", spec: "3.1.1 [MQTT-1.5.3-1], 5.0 [MQTT-1.5.4-1]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x02, u16(0), s("a\xffb")), err: MalformedPacket},
	{name: "connect_MQTT-1.5.3-1_surrogate", spec: "3.1.1 [MQTT-1.5.3-1], 5.0 [MQTT-1.5.4-1]", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x82, u16(0), s("a"), s("\xed\xa0\x80")), err: MalformedPacket},
	{name: "connect_truncated_password", spec: "3.1.1 §3.1.3.5", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0xC2, u16(0), s("a"), s("u"), 0, 5, 'p'), err: MalformedPacket},
	{name: "connect_trailing_bytes", spec: "3.1.1 §3.1.3", v: V311,
		raw: pk(0x10, s("MQTT"), 4, 0x02, u16(0), s("a"), 0xAA), err: MalformedPacket},
	{name: "connect_utf8_bom_kept", spec: "3.1.1 [MQTT-1.5.3-3]", v: V311,
		raw:  pk(0x10, s("MQTT"), 4, 0x02, u16(0), s("\xef\xbb\xbfé")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V311, CleanStart: true, ClientID: b("\xef\xbb\xbfé")}},

	// ---- CONNECT 5.0 ----
	{name: "connect_v5_properties", spec: "5.0 §3.1.2.11 §3.1.3.2", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0xEE, u16(60),
			props(0x11, u32(3600), 0x15, s("SCRAM"), 0x16, s("d"), 0x17, 1, 0x19, 1, 0x21, u16(20), 0x22, u16(10),
				0x27, u32(65536), 0x26, s("k"), s("v"), 0x26, s("k"), s("w")),
			s("cid"),
			props(0x01, 1, 0x02, u32(60), 0x03, s("text/plain"), 0x08, s("resp"), 0x09, s("corr"), 0x18, u32(5), 0x26, s("a"), s("b")),
			s("will"), s("gone"), s("u"), s("p")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V5, CleanStart: true, KeepAlive: 60, ClientID: b("cid"),
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: b("will"), WillPayload: b("gone"),
			UsernameFlag: true, PasswordFlag: true, Username: b("u"), Password: b("p"),
			Props: mk(func(p *Properties) {
				p.SetSessionExpiryInterval(3600)
				p.SetAuthMethod(b("SCRAM"))
				p.SetAuthData(b("d"))
				p.SetRequestProblemInfo(1)
				p.SetRequestResponseInfo(1)
				p.SetReceiveMaximum(20)
				p.SetTopicAliasMaximum(10)
				p.SetMaximumPacketSize(65536)
				p.User = []UserProperty{{b("k"), b("v")}, {b("k"), b("w")}}
			}),
			WillProps: mk(func(p *Properties) {
				p.SetPayloadFormat(1)
				p.SetMessageExpiry(60)
				p.SetContentType(b("text/plain"))
				p.SetResponseTopic(b("resp"))
				p.SetCorrelationData(b("corr"))
				p.SetWillDelayInterval(5)
				p.User = []UserProperty{{b("a"), b("b")}}
			})}},
	{name: "connect_v5_password_without_user", spec: "5.0 §3.1.2.9 (allowed in 5.0)", v: V5,
		raw:  pk(0x10, s("MQTT"), 5, 0x42, u16(0), props(), s("a"), s("pw")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V5, CleanStart: true, ClientID: b("a"), PasswordFlag: true, Password: b("pw")}},
	{name: "connect_v5_empty_string_property_present", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x15, s("")), s("a")),
		want: &ConnectPacket{ProtocolName: b("MQTT"), Version: V5, CleanStart: true, ClientID: b("a"),
			Props: mk(func(p *Properties) { p.SetAuthMethod(nil) })}},
	{name: "connect_v5_duplicate_property", spec: "5.0 §3.1.2.11.2 (more than once is a Protocol Error)", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x11, u32(1), 0x11, u32(2)), s("a")), err: ProtocolError},
	{name: "connect_v5_unknown_property", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x04, 1), s("a")), err: MalformedPacket},
	{name: "connect_v5_property_not_for_connect", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x23, u16(1)), s("a")), err: MalformedPacket},
	{name: "connect_v5_receive_maximum_0", spec: "5.0 §3.1.2.11.3", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x21, u16(0)), s("a")), err: ProtocolError},
	{name: "connect_v5_maximum_packet_size_0", spec: "5.0 §3.1.2.11.4", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x27, u32(0)), s("a")), err: ProtocolError},
	{name: "connect_v5_request_problem_info_2", spec: "5.0 §3.1.2.11.7", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x17, 2), s("a")), err: ProtocolError},
	{name: "connect_v5_auth_data_without_method", spec: "5.0 §3.1.2.11.10", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x16, s("x")), s("a")), err: ProtocolError},
	{name: "connect_v5_property_length_past_end", spec: "5.0 §2.2.2.1", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), 0x20, 0x11, u32(1)), err: MalformedPacket},
	{name: "connect_v5_MQTT-1.5.5-1_property_length_not_minimal", spec: "5.0 [MQTT-1.5.5-1]", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), 0x80, 0x00, s("a")), err: MalformedPacket},
	{name: "connect_v5_MQTT-1.5.4-2_nul_in_user_property", spec: "5.0 [MQTT-1.5.4-2] [MQTT-1.5.7-1]", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x02, u16(0), props(0x26, s("k"), s("\x00")), s("a")), err: MalformedPacket},
	{name: "connect_v5_will_property_not_for_will", spec: "5.0 §3.1.3.2", v: V5,
		raw: pk(0x10, s("MQTT"), 5, 0x06, u16(0), props(), s("a"), props(0x11, u32(1)), s("t"), s("m")), err: MalformedPacket},

	// ---- CONNACK ----
	{name: "connack_v311_session_present", spec: "3.1.1 §3.2.2.2", v: V311,
		raw: []byte{0x20, 0x02, 0x01, 0x00}, want: &ConnackPacket{SessionPresent: true}},
	{name: "connack_v311_not_authorized", spec: "3.1.1 §3.2.2.3", v: V311,
		raw: []byte{0x20, 0x02, 0x00, 0x05}, want: &ConnackPacket{Code: V311NotAuthorized}},
	{name: "connack_v311_reserved_return_code", spec: "3.1.1 §3.2.2.3", v: V311,
		raw: []byte{0x20, 0x02, 0x00, 0x06}, err: MalformedPacket},
	{name: "connack_reserved_ack_flags", spec: "3.1.1 §3.2.2.1, 5.0 §3.2.2.1", v: V311,
		raw: []byte{0x20, 0x02, 0x02, 0x00}, err: MalformedPacket},
	{name: "connack_v5_properties", spec: "5.0 §3.2.2.3", v: V5,
		raw: pk(0x20, 0, 0, props(0x11, u32(0), 0x12, s("auto-1"), 0x13, u16(30), 0x1A, s("ri"), 0x1C, s("srv"),
			0x1F, s("ok"), 0x21, u16(100), 0x22, u16(8), 0x24, 1, 0x25, 1, 0x27, u32(1<<20), 0x28, 1, 0x29, 0, 0x2A, 1,
			0x26, s("x"), s("y"))),
		want: &ConnackPacket{Props: mk(func(p *Properties) {
			p.SetSessionExpiryInterval(0)
			p.SetAssignedClientID(b("auto-1"))
			p.SetServerKeepAlive(30)
			p.SetResponseInfo(b("ri"))
			p.SetServerReference(b("srv"))
			p.SetReasonString(b("ok"))
			p.SetReceiveMaximum(100)
			p.SetTopicAliasMaximum(8)
			p.SetMaximumQoS(1)
			p.SetRetainAvailable(1)
			p.SetMaximumPacketSize(1 << 20)
			p.SetWildcardSubAvailable(1)
			p.SetSubIDAvailable(0)
			p.SetSharedSubAvailable(1)
			p.User = []UserProperty{{b("x"), b("y")}}
		})}},
	{name: "connack_v5_unsupported_protocol", spec: "5.0 §3.1.2.2 (0x84)", v: V5,
		raw: pk(0x20, 0, 0x84, props()), want: &ConnackPacket{Code: UnsupportedProtocolVersion}},
	{name: "connack_v5_maximum_qos_2", spec: "5.0 §3.2.2.3.4", v: V5,
		raw: pk(0x20, 0, 0, props(0x24, 2)), err: ProtocolError},

	// ---- PUBLISH ----
	{name: "publish_v311_qos0", spec: "3.1.1 §3.3", v: V311,
		raw:  []byte{0x30, 0x08, 0, 3, 'a', '/', 'b', 'h', 'i', '!'},
		want: &PublishPacket{Topic: b("a/b"), Payload: b("hi!")}},
	{name: "publish_v311_qos1_retain", spec: "3.1.1 §3.3.1.3 §3.3.2.2", v: V311,
		raw:  pk(0x33, s("t"), u16(7), "x"),
		want: &PublishPacket{QoS: 1, Retain: true, Topic: b("t"), PacketID: 7, Payload: b("x")}},
	{name: "publish_v311_qos2_dup_empty_payload", spec: "3.1.1 §3.3.1.1 [MQTT-3.3.1-10]", v: V311,
		raw:  pk(0x3C, s("t"), u16(65535)),
		want: &PublishPacket{Dup: true, QoS: 2, Topic: b("t"), PacketID: 65535}},
	{name: "publish_MQTT-3.3.1-4_qos_3", spec: "[MQTT-3.3.1-4]", v: V311,
		raw: pk(0x36, s("t"), u16(1)), err: MalformedPacket},
	{name: "publish_MQTT-3.3.1-2_dup_on_qos0", spec: "[MQTT-3.3.1-2]", v: V311,
		raw: pk(0x38, s("t"), "x"), err: MalformedPacket},
	{name: "publish_MQTT-2.3.1-1_packet_id_0", spec: "3.1.1 [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3]", v: V311,
		raw: pk(0x32, s("t"), u16(0)), err: MalformedPacket},
	{name: "publish_MQTT-1.5.3-2_nul_in_topic", spec: "[MQTT-1.5.3-2] [MQTT-4.7.3-2]", v: V311,
		raw: pk(0x30, s("a\x00")), err: MalformedPacket},
	{name: "publish_topic_past_end", spec: "3.1.1 §3.3.2.1", v: V311,
		raw: pk(0x30, 0, 9, 'a'), err: MalformedPacket},
	{name: "publish_v5_properties", spec: "5.0 §3.3.2.3", v: V5,
		raw: pk(0x32, s("t/1"), u16(9), props(0x01, 1, 0x02, u32(10), 0x03, s("json"), 0x08, s("r/1"), 0x09, s("c"),
			0x23, u16(3), 0x0B, 1, 0x0B, 0x80, 0x01, 0x26, s("k"), s("v")), "{}"),
		want: &PublishPacket{QoS: 1, Topic: b("t/1"), PacketID: 9, Payload: b("{}"), Props: mk(func(p *Properties) {
			p.SetPayloadFormat(1)
			p.SetMessageExpiry(10)
			p.SetContentType(b("json"))
			p.SetResponseTopic(b("r/1"))
			p.SetCorrelationData(b("c"))
			p.SetTopicAlias(3)
			p.SubscriptionIDs = []uint32{1, 128}
			p.User = []UserProperty{{b("k"), b("v")}}
		})}},
	{name: "publish_v5_alias_empty_topic", spec: "5.0 §3.3.2.3.4", v: V5,
		raw:  pk(0x30, s(""), props(0x23, u16(1)), "p"),
		want: &PublishPacket{Payload: b("p"), Props: mk(func(p *Properties) { p.SetTopicAlias(1) })}},
	{name: "publish_v5_subscription_id_0", spec: "5.0 §3.3.2.3.8", v: V5,
		raw: pk(0x30, s("t"), props(0x0B, 0)), err: ProtocolError},
	{name: "publish_v5_duplicate_topic_alias", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x30, s("t"), props(0x23, u16(1), 0x23, u16(2))), err: ProtocolError},
	{name: "publish_v5_session_expiry_not_allowed", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x30, s("t"), props(0x11, u32(1))), err: MalformedPacket},

	// ---- PUBACK, PUBREC, PUBREL, PUBCOMP ----
	{name: "puback_v311", spec: "3.1.1 §3.4", v: V311,
		raw: []byte{0x40, 0x02, 0x00, 0x07}, want: &AckPacket{Type: Puback, PacketID: 7}},
	{name: "pubrec_v311", spec: "3.1.1 §3.5", v: V311,
		raw: []byte{0x50, 0x02, 0x01, 0x00}, want: &AckPacket{Type: Pubrec, PacketID: 256}},
	{name: "pubrel_v311", spec: "3.1.1 §3.6 [MQTT-3.6.1-1]", v: V311,
		raw: []byte{0x62, 0x02, 0x00, 0x01}, want: &AckPacket{Type: Pubrel, PacketID: 1}},
	{name: "pubcomp_v311", spec: "3.1.1 §3.7", v: V311,
		raw: []byte{0x70, 0x02, 0x00, 0x01}, want: &AckPacket{Type: Pubcomp, PacketID: 1}},
	{name: "pubrel_MQTT-3.6.1-1_flags_0", spec: "[MQTT-3.6.1-1]", v: V311,
		raw: []byte{0x60, 0x02, 0x00, 0x01}, err: MalformedPacket},
	{name: "puback_MQTT-2.2.2-1_flags", spec: "3.1.1 [MQTT-2.2.2-1], 5.0 [MQTT-2.1.3-1]", v: V311,
		raw: []byte{0x42, 0x02, 0x00, 0x01}, err: MalformedPacket},
	{name: "puback_v311_extra_byte", spec: "3.1.1 §3.4.1", v: V311,
		raw: []byte{0x40, 0x03, 0x00, 0x01, 0x00}, err: MalformedPacket},
	{name: "puback_truncated", spec: "3.1.1 §3.4.2", v: V311,
		raw: []byte{0x40, 0x01, 0x00}, err: MalformedPacket},
	{name: "puback_v5_short_form", spec: "5.0 §3.4.2.1", v: V5,
		raw: []byte{0x40, 0x02, 0x00, 0x05}, want: &AckPacket{Type: Puback, PacketID: 5}},
	{name: "puback_v5_code_only", spec: "5.0 §3.4.2.1", v: V5,
		raw: []byte{0x40, 0x03, 0x00, 0x05, 0x10}, want: &AckPacket{Type: Puback, PacketID: 5, Code: NoMatchingSubscribers}},
	{name: "puback_v5_success_empty_props", spec: "5.0 §3.4.2.2", v: V5, noEncode: true,
		raw: []byte{0x40, 0x04, 0x00, 0x05, 0x00, 0x00}, want: &AckPacket{Type: Puback, PacketID: 5}},
	{name: "pubrec_v5_reason_string", spec: "5.0 §3.5.2.2", v: V5,
		raw: pk(0x50, u16(2), 0x97, props(0x1F, s("quota"), 0x26, s("k"), s("v"))),
		want: &AckPacket{Type: Pubrec, PacketID: 2, Code: QuotaExceeded, Props: mk(func(p *Properties) {
			p.SetReasonString(b("quota"))
			p.User = []UserProperty{{b("k"), b("v")}}
		})}},
	{name: "pubrel_v5_packet_id_not_found", spec: "5.0 §3.6.2.1", v: V5,
		raw: []byte{0x62, 0x03, 0x00, 0x09, 0x92}, want: &AckPacket{Type: Pubrel, PacketID: 9, Code: PacketIDNotFound}},
	{name: "pubcomp_v5_topic_alias_not_allowed", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0x70, u16(1), 0, props(0x23, u16(1))), err: MalformedPacket},

	// ---- SUBSCRIBE ----
	{name: "subscribe_v311_two_filters", spec: "3.1.1 §3.8", v: V311,
		raw:  pk(0x82, u16(10), s("a/+"), 1, s("#"), 2),
		want: &SubscribePacket{PacketID: 10, Subs: []Subscription{{Filter: b("a/+"), QoS: 1}, {Filter: b("#"), QoS: 2}}}},
	{name: "subscribe_MQTT-3.8.1-1_flags", spec: "[MQTT-3.8.1-1]", v: V311,
		raw: pk(0x80, u16(1), s("a"), 0), err: MalformedPacket},
	{name: "subscribe_MQTT-3.8.3-3_no_filter", spec: "3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]", v: V311,
		raw: pk(0x82, u16(1)), err: ProtocolError},
	{name: "subscribe_MQTT-3-8.3-4_reserved_bits", spec: "3.1.1 [MQTT-3-8.3-4]", v: V311,
		raw: pk(0x82, u16(1), s("a"), 0x04), err: MalformedPacket},
	{name: "subscribe_MQTT-3-8.3-4_qos_3", spec: "3.1.1 [MQTT-3-8.3-4]", v: V311,
		raw: pk(0x82, u16(1), s("a"), 3), err: MalformedPacket},
	{name: "subscribe_MQTT-2.3.1-1_packet_id_0", spec: "3.1.1 [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3]", v: V311,
		raw: pk(0x82, u16(0), s("a"), 0), err: MalformedPacket},
	{name: "subscribe_missing_options", spec: "3.1.1 §3.8.3", v: V311,
		raw: pk(0x82, u16(1), s("a")), err: MalformedPacket},
	{name: "subscribe_v5_options", spec: "5.0 §3.8.3.1", v: V5,
		raw: pk(0x82, u16(3), props(0x0B, 5, 0x26, s("k"), s("v")), s("x/#"), 0x2D, s("y"), 0x10),
		want: &SubscribePacket{PacketID: 3,
			Props: mk(func(p *Properties) {
				p.SubscriptionIDs = []uint32{5}
				p.User = []UserProperty{{b("k"), b("v")}}
			}),
			Subs: []Subscription{{Filter: b("x/#"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: b("y"), RetainHandling: 1}}}},
	{name: "subscribe_v5_retain_handling_3", spec: "5.0 §3.8.3.1", v: V5,
		raw: pk(0x82, u16(1), props(), s("a"), 0x30), err: ProtocolError},
	{name: "subscribe_v5_qos_3", spec: "5.0 §3.8.3.1", v: V5,
		raw: pk(0x82, u16(1), props(), s("a"), 0x03), err: ProtocolError},
	{name: "subscribe_v5_MQTT-3.8.3-5_reserved_bits", spec: "5.0 [MQTT-3.8.3-5]", v: V5,
		raw: pk(0x82, u16(1), props(), s("a"), 0x40), err: MalformedPacket},
	{name: "subscribe_v5_two_subscription_ids", spec: "5.0 §3.8.2.1.2", v: V5,
		raw: pk(0x82, u16(1), props(0x0B, 1, 0x0B, 2), s("a"), 0), err: ProtocolError},
	{name: "subscribe_v5_MQTT-3.8.3-2_no_filter", spec: "5.0 [MQTT-3.8.3-2]", v: V5,
		raw: pk(0x82, u16(1), props()), err: ProtocolError},

	// ---- SUBACK ----
	{name: "suback_v311", spec: "3.1.1 §3.9 [MQTT-3.8.4-5]", v: V311,
		raw:  []byte{0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80},
		want: &SubackPacket{PacketID: 10, Codes: []Code{GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError}}},
	{name: "suback_v5_reason_string", spec: "5.0 §3.9 [MQTT-3.9.3-1]", v: V5,
		raw: pk(0x90, u16(4), props(0x1F, s("no")), 0x87, 0xA2),
		want: &SubackPacket{PacketID: 4, Props: mk(func(p *Properties) { p.SetReasonString(b("no")) }),
			Codes: []Code{NotAuthorized, WildcardSubNotSupported}}},
	{name: "suback_no_codes", spec: "3.1.1 §3.9.3", v: V311,
		raw: pk(0x90, u16(4)), err: ProtocolError},

	// ---- UNSUBSCRIBE / UNSUBACK ----
	{name: "unsubscribe_v311", spec: "3.1.1 §3.10", v: V311,
		raw:  pk(0xA2, u16(11), s("a/b"), s("c")),
		want: &UnsubscribePacket{PacketID: 11, Filters: [][]byte{b("a/b"), b("c")}}},
	{name: "unsubscribe_MQTT-3.10.1-1_flags", spec: "[MQTT-3.10.1-1]", v: V311,
		raw: pk(0xA0, u16(11), s("a")), err: MalformedPacket},
	{name: "unsubscribe_MQTT-3.10.3-2_no_filter", spec: "3.1.1 [MQTT-3.10.3-2], 5.0 [MQTT-3.10.3-2]", v: V311,
		raw: pk(0xA2, u16(11)), err: ProtocolError},
	{name: "unsubscribe_v5_user_property", spec: "5.0 §3.10.2.1", v: V5,
		raw: pk(0xA2, u16(12), props(0x26, s("k"), s("v")), s("a")),
		want: &UnsubscribePacket{PacketID: 12, Props: mk(func(p *Properties) { p.User = []UserProperty{{b("k"), b("v")}} }),
			Filters: [][]byte{b("a")}}},
	{name: "unsubscribe_v5_subscription_id_not_allowed", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0xA2, u16(12), props(0x0B, 1), s("a")), err: MalformedPacket},
	{name: "unsuback_v311", spec: "3.1.1 §3.11", v: V311,
		raw: []byte{0xB0, 0x02, 0x00, 0x0B}, want: &SubackPacket{PacketID: 11}},
	{name: "unsuback_v5_codes", spec: "5.0 §3.11.3 [MQTT-3.11.3-1]", v: V5,
		raw:  pk(0xB0, u16(12), props(), 0x00, 0x11),
		want: &SubackPacket{PacketID: 12, Codes: []Code{Success, NoSubscriptionExisted}}},

	// ---- PINGREQ / PINGRESP ----
	{name: "pingreq", spec: "3.1.1 §3.12", v: V311, raw: []byte{0xC0, 0x00}},
	{name: "pingresp", spec: "3.1.1 §3.13", v: V311, raw: []byte{0xD0, 0x00}},
	{name: "pingreq_with_body", spec: "3.1.1 §3.12", v: V311, raw: []byte{0xC0, 0x01, 0x00}, err: MalformedPacket},
	{name: "pingreq_MQTT-2.2.2-1_flags", spec: "[MQTT-2.2.2-1]", v: V311, raw: []byte{0xC1, 0x00}, err: MalformedPacket},

	// ---- DISCONNECT ----
	{name: "disconnect_v311", spec: "3.1.1 §3.14", v: V311, raw: []byte{0xE0, 0x00}, want: &DisconnectPacket{}},
	{name: "disconnect_v311_with_body", spec: "3.1.1 §3.14", v: V311, raw: []byte{0xE0, 0x01, 0x00}, err: MalformedPacket},
	{name: "disconnect_v5_normal_short", spec: "5.0 §3.14.2.1", v: V5, raw: []byte{0xE0, 0x00}, want: &DisconnectPacket{}},
	{name: "disconnect_v5_with_will", spec: "5.0 §3.14.2.1 (0x04)", v: V5,
		raw: []byte{0xE0, 0x01, 0x04}, want: &DisconnectPacket{Code: DisconnectWithWill}},
	{name: "disconnect_v5_session_taken_over", spec: "5.0 §3.14.2.2 [MQTT-3.1.4-3]", v: V5,
		raw: pk(0xE0, 0x8E, props(0x11, u32(0), 0x1C, s("other"), 0x1F, s("takeover"))),
		want: &DisconnectPacket{Code: SessionTakenOver, Props: mk(func(p *Properties) {
			p.SetSessionExpiryInterval(0)
			p.SetServerReference(b("other"))
			p.SetReasonString(b("takeover"))
		})}},
	{name: "disconnect_v5_auth_method_not_allowed", spec: "5.0 §2.2.2.2", v: V5,
		raw: pk(0xE0, 0x00, props(0x15, s("m"))), err: MalformedPacket},

	// ---- AUTH ----
	{name: "auth_v5_success_short", spec: "5.0 §3.15.2.1", v: V5, raw: []byte{0xF0, 0x00}, want: &AuthPacket{}},
	{name: "auth_v5_continue", spec: "5.0 §3.15.2.2", v: V5,
		raw: pk(0xF0, 0x18, props(0x15, s("SCRAM"), 0x16, s("\x00\x01"))),
		want: &AuthPacket{Code: ContinueAuthentication, Props: mk(func(p *Properties) {
			p.SetAuthMethod(b("SCRAM"))
			p.SetAuthData(b("\x00\x01"))
		})}},
	{name: "auth_v311_reserved_type", spec: "3.1.1 §2.2.1 (15 reserved)", v: V311, raw: []byte{0xF0, 0x00}, err: MalformedPacket},
	{name: "auth_v5_flags", spec: "5.0 [MQTT-2.1.3-1]", v: V5, raw: []byte{0xF1, 0x00}, err: MalformedPacket},

	// ---- 5.0 reason codes a packet may not carry ----
	{name: "puback_v5_invalid_reason_code", spec: "5.0 §3.4.2.1", v: V5,
		raw: []byte{0x40, 0x03, 0x00, 0x01, 0x92}, err: ProtocolError},
	{name: "pubrel_v5_invalid_reason_code", spec: "5.0 §3.6.2.1", v: V5,
		raw: []byte{0x62, 0x03, 0x00, 0x01, 0x10}, err: ProtocolError},
	{name: "connack_v5_invalid_reason_code", spec: "5.0 §3.2.2.2", v: V5,
		raw: pk(0x20, 0, 0x8E, props()), err: ProtocolError},
	{name: "suback_v5_invalid_reason_code", spec: "5.0 §3.9.3", v: V5,
		raw: pk(0x90, u16(1), props(), 0x92), err: ProtocolError},
	{name: "suback_v311_MQTT-3.9.3-2_reserved_return_code", spec: "3.1.1 [MQTT-3.9.3-2]", v: V311,
		raw: pk(0x90, u16(1), 0x03), err: ProtocolError},
	{name: "unsuback_v5_invalid_reason_code", spec: "5.0 §3.11.3", v: V5,
		raw: pk(0xB0, u16(1), props(), 0x10), err: ProtocolError},
	{name: "disconnect_v5_invalid_reason_code", spec: "5.0 §3.14.2.1", v: V5,
		raw: []byte{0xE0, 0x01, 0x84}, err: ProtocolError},
	{name: "auth_v5_invalid_reason_code", spec: "5.0 §3.15.2.1", v: V5,
		raw: []byte{0xF0, 0x01, 0x87}, err: ProtocolError},

	// ---- fixed header ----
	{name: "reserved_type_0", spec: "3.1.1 §2.2.1, 5.0 §2.1.2", v: V5, raw: []byte{0x00, 0x00}, err: MalformedPacket},
}
