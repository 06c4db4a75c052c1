package packet

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decoded returns the one packet struct p points to, or nil.
func decoded(p Packet) any {
	for _, v := range []any{p.Connect, p.Connack, p.Publish, p.Ack, p.Subscribe, p.Suback, p.Unsubscribe, p.Disconnect, p.Auth} {
		if rv := reflect.ValueOf(v); !rv.IsNil() {
			return v
		}
	}
	return nil
}

func TestFixtures(t *testing.T) {
	names := map[string]bool{}
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			require.False(t, names[f.name], "duplicate fixture name")
			names[f.name] = true
			require.NotEmpty(t, f.spec)
			n, err := Frame(f.raw, 0)
			require.NoError(t, err)
			require.Equal(t, len(f.raw), n, "Frame length")
			// A partial packet asks for more bytes.
			n, err = Frame(f.raw[:len(f.raw)-1], 0)
			require.NoError(t, err)
			require.Zero(t, n)

			var d Decoder
			p, err := d.Decode(f.raw, f.v)
			if f.err != nil {
				require.Error(t, err)
				require.ErrorIs(t, err, f.err, "error %v", err)
				var c Code
				require.True(t, errors.As(err, &c))
				require.Equal(t, f.err, c)
				return
			}
			require.NoError(t, err)
			require.Equal(t, Type(f.raw[0]>>4), p.Type)
			require.Equal(t, f.want, decoded(p))
			if f.noEncode {
				return
			}
			require.Equal(t, f.raw, Append(nil, f.v, p), "re-encoded bytes")
		})
	}
}

// TestRoundTrip encodes packets built in code and decodes them back.
func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 20000) // 3-byte remaining length
	cases := []struct {
		name string
		v    Version
		p    Packet
	}{
		{"publish_v5_big_payload", V5, Packet{Type: Publish, Publish: &PublishPacket{QoS: 2, Topic: b("a/b"), PacketID: 1,
			Payload: big, Props: mk(func(p *Properties) { p.SetMessageExpiry(1); p.SubscriptionIDs = []uint32{268435455} })}}},
		{"publish_v311_retain", V311, Packet{Type: Publish, Publish: &PublishPacket{Retain: true, Topic: b("t"), Payload: b("p")}}},
		{"connect_v5_no_will", V5, Packet{Type: Connect, Connect: &ConnectPacket{ProtocolName: b("MQTT"), Version: V5, ClientID: b("c"),
			UsernameFlag: true, Username: b("u"), Props: mk(func(p *Properties) { p.SetReceiveMaximum(1) })}}},
		{"connack_v5_code", V5, Packet{Type: Connack, Connack: &ConnackPacket{Code: BadUserOrPassword}}},
		{"ack_v5_pubcomp_props", V5, Packet{Type: Pubcomp, Ack: &AckPacket{Type: Pubcomp, PacketID: 3,
			Props: mk(func(p *Properties) { p.SetReasonString(b("r")) })}}},
		{"subscribe_v311", V311, Packet{Type: Subscribe, Subscribe: &SubscribePacket{PacketID: 9, Subs: []Subscription{{Filter: b("a"), QoS: 2}}}}},
		{"unsuback_v5", V5, Packet{Type: Unsuback, Suback: &SubackPacket{PacketID: 2, Codes: []Code{NoSubscriptionExisted}}}},
		{"disconnect_v5_props", V5, Packet{Type: Disconnect, Disconnect: &DisconnectPacket{Props: mk(func(p *Properties) { p.SetSessionExpiryInterval(9) })}}},
		{"auth_v5", V5, Packet{Type: Auth, Auth: &AuthPacket{Code: ReAuthenticate}}},
		{"pingreq", V5, Packet{Type: Pingreq}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := Append(nil, c.v, c.p)
			n, err := Frame(raw, 0)
			require.NoError(t, err)
			require.Equal(t, len(raw), n)
			var d Decoder
			got, err := d.Decode(raw, c.v)
			require.NoError(t, err)
			require.Equal(t, c.p, got)
		})
	}
}

func TestAppendPublishHeader(t *testing.T) {
	p := &PublishPacket{QoS: 1, Topic: b("a"), PacketID: 1, Payload: b("payload")}
	hdr := AppendPublishHeader(nil, V311, p)
	require.Equal(t, AppendPublish(nil, V311, p), append(hdr, p.Payload...))
}

func TestConnackV311Mapping(t *testing.T) {
	for in, want := range map[Code]Code{
		Success: V311Accepted, UnsupportedProtocolVersion: V311UnacceptableProtocol, ClientIDNotValid: V311IdentifierRejected,
		ServerUnavailable: V311ServerUnavailable, ServerBusy: V311ServerUnavailable, BadUserOrPassword: V311BadUserOrPassword,
		NotAuthorized: V311NotAuthorized, Banned: V311NotAuthorized, V311NotAuthorized: V311NotAuthorized,
	} {
		require.Equal(t, want, V311ReturnCode(in), "%v", in)
		require.Equal(t, []byte{0x20, 2, 0, byte(want)}, AppendConnack(nil, V311, &ConnackPacket{Code: in}))
	}
}

func TestUnsupportedVersionReturnsPacket(t *testing.T) {
	var d Decoder
	p, err := d.DecodeConnect(pk(0x10, s("MQTT"), 6, 0x02, u16(0), s("a")))
	require.ErrorIs(t, err, UnsupportedProtocolVersion)
	require.NotNil(t, p)
	require.Equal(t, Version(6), p.Version)
}

func TestFrame(t *testing.T) {
	cases := []struct {
		name string
		buf  []byte
		max  int
		n    int
		err  error
	}{
		{"empty", nil, 0, 0, nil},
		{"one_byte", []byte{0x30}, 0, 0, nil},
		{"length_continues", []byte{0x30, 0x80}, 0, 0, nil},
		{"zero_length", []byte{0xC0, 0x00, 0xFF}, 0, 2, nil},
		{"two_byte_length_incomplete", []byte{0x30, 0x80, 0x01}, 0, 0, nil},
		{"max_remaining_header", []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, 0, 0, nil},
		{"MQTT-1.5.5-1_over_4_bytes", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 0, 0, MalformedPacket},
		{"MQTT-1.5.5-1_not_minimal", []byte{0x30, 0x80, 0x00}, 0, 0, MalformedPacket},
		{"MQTT-1.5.5-1_not_minimal_3", []byte{0x30, 0x81, 0x80, 0x00}, 0, 0, MalformedPacket},
		{"too_large_before_body", []byte{0x30, 0x80, 0x01}, 100, 0, PacketTooLarge},
		{"at_max", []byte{0x30, 0x01, 0x00}, 3, 3, nil},
		{"over_max", []byte{0x30, 0x02, 0x00, 0x00}, 3, 0, PacketTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := Frame(c.buf, c.max)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.n, n)
		})
	}
}

func TestDecodeWrongType(t *testing.T) {
	var d Decoder
	_, err := d.DecodePublish([]byte{0x40, 0x02, 0x00, 0x01}, V311)
	require.ErrorIs(t, err, ProtocolError)
	_, err = d.DecodeAck([]byte{0x30, 0x00}, V311)
	require.ErrorIs(t, err, ProtocolError)
	_, err = d.DecodePublish([]byte{0x30, 0x05, 0x00}, V311) // length disagrees with the buffer
	require.ErrorIs(t, err, MalformedPacket)
}

// TestDecoderReuse checks that a second decode does not disturb slices
// handed out by an earlier one only through the documented rule: values
// stay put until the next decode, and the next decode gets fresh structs.
func TestDecoderReuse(t *testing.T) {
	var d Decoder
	raw1 := pk(0x82, u16(1), props(0x26, s("a"), s("b")), s("one"), 0)
	p1, err := d.DecodeSubscribe(raw1, V5)
	require.NoError(t, err)
	require.Equal(t, "one", string(p1.Subs[0].Filter))
	raw2 := pk(0x82, u16(2), props(), s("two"), 1, s("three"), 2)
	p2, err := d.DecodeSubscribe(raw2, V5)
	require.NoError(t, err)
	require.Len(t, p2.Subs, 2)
	require.Empty(t, p2.Props.User)
}

func TestValidTopicName(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "a/b": true, "/": true, "$SYS/x": true, "a b": true,
		"": false, "a/+": false, "#": false, "a#": false, // [MQTT-4.7.3-1] [MQTT-4.7.1-1] [MQTT-3.3.2-2]
	} {
		require.Equal(t, ok, ValidTopicName([]byte(name)), "%q", name)
	}
	require.False(t, ValidTopicName(bytes.Repeat([]byte("a"), 65536)), "[MQTT-4.7.3-3] length")
}

func TestValidTopicFilter(t *testing.T) {
	for f, ok := range map[string]bool{
		"#": true, "a/#": true, "+": true, "+/+": true, "a/+/b": true, "/+": true, "+/": true, "a//b": true, "/#": true,
		"":     false,                              // [MQTT-4.7.3-1]
		"a/b#": false, "a/#/b": false, "##": false, // [MQTT-4.7.1-2] (3.1.1), [MQTT-4.7.1-1] (5.0)
		"a+/b": false, "a/+b": false, "++": false, // [MQTT-4.7.1-3] (3.1.1), [MQTT-4.7.1-2] (5.0)
	} {
		require.Equal(t, ok, ValidTopicFilter([]byte(f)), "%q", f)
	}
}

func TestValidUTF8(t *testing.T) {
	require.True(t, ValidUTF8([]byte("héllo wörld ☃")))
	require.False(t, ValidUTF8([]byte("é\x00")))    // U+0000 after a multi-byte rune
	require.False(t, ValidUTF8([]byte("\xc0\x80"))) // overlong NUL
	require.False(t, ValidUTF8([]byte("\xed\xbf\xbf")))
}

func TestCodeError(t *testing.T) {
	require.Equal(t, "mqtt: malformed packet", MalformedPacket.Error())
	require.True(t, strings.Contains(Code(0x7F).Error(), "0x7f"))
	require.Equal(t, "PUBREL", Pubrel.String())
	require.Equal(t, "5.0", V5.String())
}

func TestCloneMessageProps(t *testing.T) {
	src := []byte("ctype-resp-corr-key-val")
	p := mk(func(p *Properties) {
		p.SetContentType(src[0:5])
		p.SetResponseTopic(src[6:10])
		p.SetCorrelationData(src[11:15])
		p.SetTopicAlias(4)
		p.SetPayloadFormat(1)
		p.User = []UserProperty{{src[16:19], src[20:23]}}
		p.SubscriptionIDs = []uint32{1}
	})
	require.True(t, p.HasMessageProps())
	c := p.CloneMessageProps()
	for i := range src {
		src[i] = '!'
	}
	ct, _ := c.ContentType()
	require.Equal(t, "ctype", string(ct))
	require.Equal(t, "val", string(c.User[0].Value))
	require.False(t, c.Has(PropTopicAlias))
	require.Empty(t, c.SubscriptionIDs)
	f, ok := c.PayloadFormat()
	require.True(t, ok)
	require.Equal(t, byte(1), f)
	var empty Properties
	require.False(t, empty.HasMessageProps())
}

// TestZeroAlloc pins the allocation budget: PUBLISH decode and encode
// allocate nothing, nor do CONNECT and SUBSCRIBE once the Decoder's
// scratch slices have grown.
func TestZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var d Decoder
	buf := make([]byte, 0, 256)
	p := &PublishPacket{QoS: 1, Topic: b("a/b"), PacketID: 1, Payload: b("x"),
		Props: mk(func(p *Properties) { p.User = []UserProperty{{b("k"), b("v")}} })}
	for name, f := range map[string]func(){
		"DecodePublish":   func() { _, _ = d.DecodePublish(benchPublish, V5) },
		"AppendPublish":   func() { buf = AppendPublish(buf[:0], V5, p) },
		"DecodeConnect":   func() { _, _ = d.DecodeConnect(benchConnect) },
		"DecodeSubscribe": func() { _, _ = d.DecodeSubscribe(benchSubscribe, V5) },
		"Frame":           func() { _, _ = Frame(benchPublish, 0) },
	} {
		f() // grow scratch
		require.Zero(t, testing.AllocsPerRun(100, f), name)
	}
}

func TestPropertiesHasClear(t *testing.T) {
	var p Properties
	require.False(t, p.Has(PropUser))
	p.User = []UserProperty{{b("k"), nil}}
	p.SubscriptionIDs = []uint32{3}
	p.SetReasonString(nil) // present though empty
	require.True(t, p.Has(PropUser))
	require.True(t, p.Has(PropSubscriptionID))
	require.True(t, p.Has(PropReasonString))
	p.Clear(PropUser)
	p.Clear(PropReasonString)
	require.False(t, p.Has(PropUser))
	require.False(t, p.Has(PropReasonString))
	p.Reset()
	require.False(t, p.Has(PropSubscriptionID))
}

func TestAppendConnectDefaultName(t *testing.T) {
	var d Decoder
	cp, err := d.DecodeConnect(AppendConnect(nil, &ConnectPacket{Version: V31, ClientID: b("x")}))
	require.NoError(t, err)
	require.Equal(t, "MQIsdp", string(cp.ProtocolName))
	cp, err = d.DecodeConnect(AppendConnect(nil, &ConnectPacket{Version: V5, ClientID: b("x")}))
	require.NoError(t, err)
	require.Equal(t, "MQTT", string(cp.ProtocolName))
}
