package mqtt_test

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
)

// raw is a byte-level MQTT client for protocol-violation tests: it sends
// exactly the bytes given and reads whole packets back.
type raw struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, e *env) *raw {
	t.Helper()
	c, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(b ...byte) {
	r.t.Helper()
	_, err := r.c.Write(b)
	require.NoError(r.t, err)
}

// read returns the next packet's first byte and body.
func (r *raw) read() (byte, []byte) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a loaded CI machine
	h, err := r.br.ReadByte()
	require.NoError(r.t, err, "reading a packet")
	n, mul := 0, 1
	for {
		b, err := r.br.ReadByte()
		require.NoError(r.t, err)
		n += int(b&0x7F) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r.br, body)
	require.NoError(r.t, err)
	return h, body
}

// closed checks the server closed the connection (after any packets).
func (r *raw) closed() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(r.br)
	require.NoError(r.t, err, "the server closes the connection (EOF, not a timeout)")
}

// connect311 is CONNECT for MQTT 3.1.1 with client id "c", clean session.
var connect311 = []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}

// connect5 is CONNECT for MQTT 5.0 with client id "c", clean start, no properties.
var connect5 = []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 1, 'c'}

func (r *raw) connack() (present bool, code byte) {
	r.t.Helper()
	h, body := r.read()
	require.Equal(r.t, byte(0x20), h, "CONNACK")
	return body[0]&1 == 1, body[1]
}

// Row 1: CONNECT must be first [MQTT-3.1.0-1]; a second CONNECT is a
// protocol error [MQTT-3.1.0-2].
func TestMQTT_3_1_0_1_FirstPacketMustBeConnect(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(0xC0, 0) // PINGREQ first
	r.closed()
}

func TestMQTT_3_1_0_2_SecondConnectCloses(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	_, code := r.connack()
	require.Zero(t, code)
	r.send(connect311...)
	r.closed()
}

// Row 2: an unsupported protocol level gets CONNACK 0x01 and a close
// [MQTT-3.1.2-2].
func TestMQTT_3_1_2_2_UnsupportedLevel(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	bad := append([]byte(nil), connect311...)
	bad[8] = 9
	r.send(bad...)
	present, code := r.connack()
	require.False(t, present)
	require.Equal(t, byte(0x01), code)
	r.closed()
}

// Row 3: the CONNECT reserved flag must be 0 [MQTT-3.1.2-3].
func TestMQTT_3_1_2_3_ReservedFlag(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	bad := append([]byte(nil), connect311...)
	bad[9] |= 0x01
	r.send(bad...)
	r.closed()
}

// Row 3: SUBSCRIBE fixed-header flags must be 0b0010 [MQTT-3.8.1-1].
func TestMQTT_3_8_1_1_SubscribeFlags(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x80, 6, 0, 1, 0, 1, 'a', 0) // flags 0000
	r.closed()
}

// Row 6: empty client id with clean session 0 → 0x02 in 3.1.1
// [MQTT-3.1.3-8]; with clean session 1 one is assigned [MQTT-3.1.3-6].
func TestMQTT_3_1_3_8_EmptyClientID(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 0)
	present, code := r.connack()
	require.False(t, present, "[MQTT-3.2.2-4]")
	require.Equal(t, byte(0x02), code)
	r.closed()

	r2 := dialRaw(t, e)
	r2.send(0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0)
	_, code = r2.connack()
	require.Zero(t, code, "[MQTT-3.1.3-6]")
}

// Row 17: a PUBLISH topic with a wildcard closes the connection
// [MQTT-3.3.2-2].
func TestMQTT_3_3_2_2_WildcardPublishCloses(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x30, 5, 0, 3, 'a', '/', '+')
	r.closed()
}

// Row 18: bad filters are refused with 0x80 (3.1.1) [MQTT-4.7.1-2/-3];
// row 24: one code per filter, in order [MQTT-3.8.4-5].
func TestMQTT_4_7_1_FilterValidation(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	// SUBSCRIBE id 7: "a/b#" qos0, "a+/b" qos1, "a/#" qos1
	r.send(0x82, 22, 0, 7,
		0, 4, 'a', '/', 'b', '#', 0,
		0, 4, 'a', '+', '/', 'b', 1,
		0, 3, 'a', '/', '#', 1)
	h, body := r.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	require.Equal(t, []byte{0, 7, 0x80, 0x80, 1}, body, "[MQTT-2.3.1-7] id echoed, codes in order")
}

// Row 14: a repeated QoS 2 PUBLISH before PUBREL gets PUBREC and no second
// delivery; PUBREL → PUBCOMP [MQTT-4.3.3-9..-12].
func TestMQTT_4_3_3_QoS2Receiver(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	watcher, _ := dial5(t, e, pahoConnect("w"))
	watcher.sub(t, "q2", 2)
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	pub := []byte{0x34, 7, 0, 2, 'q', '2', 0, 9, 'x'}
	r.send(pub...)
	h, body := r.read()
	require.Equal(t, byte(0x50), h, "PUBREC")
	require.Equal(t, []byte{0, 9}, body)
	dup := append([]byte(nil), pub...)
	dup[0] |= 0x08
	r.send(dup...)
	h, body = r.read()
	require.Equal(t, byte(0x50), h, "PUBREC again for the repeat")
	require.Equal(t, []byte{0, 9}, body)
	r.send(0x62, 2, 0, 9) // PUBREL
	h, body = r.read()
	require.Equal(t, byte(0x70), h, "PUBCOMP")
	require.Equal(t, []byte{0, 9}, body)
	require.Equal(t, "x", string(watcher.next(t).Payload))
	watcher.none(t)
}

// Row 10: no packet within 1.5 × keep alive closes the connection
// [MQTT-3.1.2-24].
func TestMQTT_3_1_2_24_KeepAlive(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 1, 0, 1, 'k') // keep alive 1 s
	r.connack()
	start := time.Now()
	r.closed()
	require.Greater(t, time.Since(start), time.Second, "not before the keep alive")
}

// Row 8 and SPEC: a client id belongs to the identity that created its
// session (tested with users in auth_test.go); row 9: session present is
// 0 for a clean session [MQTT-3.2.2-1].
func TestMQTT_3_2_2_1_SessionPresentZeroOnClean(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect5...)
	present, code := r.connack()
	require.False(t, present)
	require.Zero(t, code)
}

// Row 4: a remaining length longer than 4 bytes is malformed (§2.2.3).
func TestMQTT_2_2_3_RemainingLengthOverFourBytes(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)
	r.closed()
}

// Row 5: ill-formed UTF-8 in a topic closes the connection [MQTT-1.5.3-1].
func TestMQTT_1_5_3_1_BadUTF8(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x30, 5, 0, 3, 'a', 0xC3, 0x28)
	r.closed()
}

// Row 19: U+0000 in a topic closes the connection [MQTT-1.5.3-2], [MQTT-4.7.3-2].
func TestMQTT_1_5_3_2_NulInTopic(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x30, 5, 0, 3, 'a', 0, 'b')
	r.closed()
}

// Row 11: a QoS 1 PUBLISH with packet id 0 is a protocol violation
// [MQTT-2.3.1-1].
func TestMQTT_2_3_1_1_ZeroPacketID(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x32, 6, 0, 1, 'a', 0, 0, 'x')
	r.closed()
}

// Row 12: PUBACK echoes the packet id [MQTT-2.3.1-6]; row 15: an incoming
// DUP flag is not propagated to subscribers [MQTT-3.3.1-3].
func TestMQTT_2_3_1_6_AckEchoesIDAndDupNotPropagated(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	watcher, _ := dial5(t, e, pahoConnect("w"))
	watcher.sub(t, "d", 1)
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x3A, 6, 0, 1, 'd', 0x12, 0x34, 'x') // QoS 1, DUP=1, id 0x1234
	h, body := r.read()
	require.Equal(t, byte(0x40), h, "PUBACK")
	require.Equal(t, []byte{0x12, 0x34}, body)
	m := watcher.next(t)
	require.Equal(t, "x", string(m.Payload))
	require.False(t, m.Duplicate(), "DUP is not propagated [MQTT-3.3.1-3]")
}

// Row 13: an unacknowledged QoS 1 message is re-sent on session resume
// with DUP=1 and the same packet id [MQTT-4.4.0-1], [MQTT-3.3.1-1].
func TestMQTT_4_4_0_1_ResendOnResume(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	persistent := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 1, 'p'}
	r := dialRaw(t, e)
	r.send(persistent...)
	r.connack()
	r.send(0x82, 6, 0, 1, 0, 1, 'z', 1) // SUBSCRIBE z QoS 1
	h, _ := r.read()
	require.Equal(t, byte(0x90), h)
	pub, _ := dial5(t, e, pahoConnect("pub"))
	pub.pub(t, "z", 1, false, "keep")
	h, body := r.read()
	require.Equal(t, byte(0x32), h, "PUBLISH QoS 1, DUP 0")
	id := body[3:5]
	r.c.Close() // no PUBACK

	r2 := dialRaw(t, e)
	r2.send(persistent...)
	present, _ := r2.connack()
	require.True(t, present, "[MQTT-3.2.2-2]")
	h, body = r2.read()
	require.Equal(t, byte(0x3A), h, "re-sent with DUP=1")
	require.Equal(t, id, body[3:5], "same packet id")
	require.Equal(t, "keep", string(body[5:]))
}

// Row 16: messages on one topic arrive in publish order [MQTT-4.6.0-5].
func TestMQTT_4_6_0_Ordering(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "o", 1)
	pub, _ := dial5(t, e, pahoConnect("p"))
	for i := range 50 {
		pub.pub(t, "o", 1, false, strconv.Itoa(i))
	}
	for i := range 50 {
		require.Equal(t, strconv.Itoa(i), string(sub.next(t).Payload))
	}
}

// Row 20: filters starting with a wildcard do not match $-topics
// [MQTT-4.7.2-1].
func TestMQTT_4_7_2_1_DollarTopics(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	all, _ := dial5(t, e, pahoConnect("all"))
	all.sub(t, "#", 0)
	plus, _ := dial5(t, e, pahoConnect("plus"))
	plus.sub(t, "+/x", 0)
	sys, _ := dial5(t, e, pahoConnect("sys"))
	sys.sub(t, "$SYS/#", 0)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "$SYS/x", 0, false, "s")
	require.Equal(t, "$SYS/x", sys.next(t).Topic)
	all.none(t)
	plus.none(t)
}

// Row 23: an identical re-SUBSCRIBE replaces the subscription (no
// duplicates) and re-sends retained messages [MQTT-3.8.4-3].
func TestMQTT_3_8_4_3_ResubscribeReplaces(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "rs", 1, true, "kept")
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "rs", 1)
	require.Equal(t, "kept", string(sub.next(t).Payload))
	sub.sub(t, "rs", 1)
	require.Equal(t, "kept", string(sub.next(t).Payload), "retained re-sent on re-subscribe")
	pub.pub(t, "rs", 1, false, "live")
	require.Equal(t, "live", string(sub.next(t).Payload))
	sub.none(t)
}

// Row 25: overlapping subscriptions: one copy, at the maximum matching
// QoS [MQTT-3.3.5-1], [MQTT-3.3.4-2]; delivered QoS = min(publish,
// granted) [MQTT-3.8.4-8]. (overlap_test.go has the rest.)
func TestMQTT_3_3_5_1_OverlappingSubscriptions(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "ov/+", 0)
	sub.sub(t, "ov/b", 1)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "ov/b", 2, false, "x")
	require.Equal(t, byte(1), sub.next(t).QoS)
	sub.none(t)
}

// Row 6 (5.0): an empty client id gets an Assigned Client Identifier
// [MQTT-3.1.3-7], [MQTT-3.2.2-16].
func TestMQTT_3_2_2_16_AssignedClientID(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	_, ack := dial5(t, e, &paho.Connect{CleanStart: true})
	require.NotNil(t, ack.Properties)
	require.NotEmpty(t, ack.Properties.AssignedClientID)
}

// Row 29: topic alias 0 is a protocol error: DISCONNECT 0x94 [MQTT-3.3.2-8].
func TestMQTT_3_3_2_8_TopicAliasZero(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect5...)
	r.connack()
	// PUBLISH QoS 0 topic "a", properties: topic alias (0x23) = 0.
	r.send(0x30, 8, 0, 1, 'a', 3, 0x23, 0, 0, 'x')
	h, body := r.read()
	require.Equal(t, byte(0xE0), h, "DISCONNECT")
	require.Equal(t, byte(0x94), body[0])
	r.closed()
}

// Row 29: an alias set with a topic is used by a later PUBLISH with an
// empty topic [MQTT-3.3.2-12].
func TestMQTT_3_3_2_12_TopicAliasUse(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "al/t", 0)
	r := dialRaw(t, e)
	r.send(connect5...)
	r.connack()
	r.send(0x30, 11, 0, 4, 'a', 'l', '/', 't', 3, 0x23, 0, 1, '1')
	r.send(0x30, 7, 0, 0, 3, 0x23, 0, 1, '2')
	require.Equal(t, "1", string(sub.next(t).Payload))
	m := sub.next(t)
	require.Equal(t, "al/t", m.Topic)
	require.Equal(t, "2", string(m.Payload))
}

// Row 27: never more unacknowledged QoS 1 messages than the client's
// Receive Maximum [MQTT-3.3.4-9] (the server's side, a client past it:
// flow_test.go, [MQTT-3.3.4-7]).
func TestMQTT_3_3_4_9_ReceiveMaximum(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	// CONNECT 5.0, client id "c", properties: receive maximum (0x21) = 2.
	r.send(0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 3, 0x21, 0, 2, 0, 1, 'c')
	r.connack()
	r.send(0x82, 7, 0, 1, 0, 0, 1, 'q', 1) // SUBSCRIBE q QoS 1, no properties
	h, _ := r.read()
	require.Equal(t, byte(0x90), h)
	pub, _ := dial5(t, e, pahoConnect("p"))
	for i := range 5 {
		pub.pub(t, "q", 1, false, strconv.Itoa(i))
	}
	var ids [][]byte
	for range 2 {
		h, body := r.read()
		require.Equal(t, byte(0x32), h)
		ids = append(ids, body[3:5])
	}
	_ = r.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := r.br.ReadByte()
	require.Error(t, err, "a third PUBLISH before any PUBACK")
	r.send(0x40, 2, ids[0][0], ids[0][1]) // PUBACK the first
	h, _ = r.read()
	require.Equal(t, byte(0x32), h, "the window moved by one")
}

// Row 28: nothing larger than the client's Maximum Packet Size is sent
// [MQTT-3.1.2-24/-25].
func TestMQTT_3_1_2_25_MaximumPacketSize(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	max := uint32(64)
	sub, _ := dial5(t, e, &paho.Connect{ClientID: "s", CleanStart: true, Properties: &paho.ConnectProperties{MaximumPacketSize: &max}})
	sub.sub(t, "big", 0)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "big", 0, false, strings.Repeat("x", 200))
	pub.pub(t, "big", 0, false, "small")
	require.Equal(t, "small", string(sub.next(t).Payload))
}

// Row 30: NoLocal on a shared subscription is a protocol error
// [MQTT-3.8.3-4]; a 5.0 shared subscription needs a non-empty share name.
func TestMQTT_3_8_3_4_SharedNoLocal(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	cl, _ := dial5(t, e, pahoConnect("s"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "$share//x", QoS: 0}, {Topic: "$share/g/x", QoS: 0, NoLocal: true}}})
	require.Error(t, err, "paho reports the failed subscriptions")
	require.NotNil(t, sa)
	require.Equal(t, []byte{0x8F, 0x82}, sa.Reasons, "empty share name: 0x8F; NoLocal on a shared subscription: 0x82")
}

// ack_wait (nats-server's mqtt option): a 3.1.1 client that does not
// acknowledge a QoS 1 message gets it again, DUP set, same packet id.
func TestMQTTAckWaitRedelivery311(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{AckWait: 200 * time.Millisecond})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x82, 6, 0, 1, 0, 1, 'w', 1)
	h, _ := r.read()
	require.Equal(t, byte(0x90), h)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "w", 1, false, "again")
	h, body := r.read()
	require.Equal(t, byte(0x32), h)
	h, body2 := r.read()
	require.Equal(t, byte(0x3A), h, "re-sent with DUP after ack_wait")
	require.Equal(t, body[3:5], body2[3:5])
	r.send(0x40, 2, body[3], body[4]) // PUBACK ends it
	_ = r.c.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
	_, err := r.br.ReadByte()
	require.Error(t, err, "no resend after PUBACK")
}

// max_ack_pending: a session whose QoS 1/2 subscriptions would together
// exceed 65535 in-flight messages gets SUBACK 0x80 (nats-server's rule).
func TestMQTTMaxAckPendingSessionTotal(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{MaxAckPending: 30000})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x82, 14, 0, 3, 0, 1, 'a', 1, 0, 1, 'b', 1, 0, 1, 'c', 1)
	h, body := r.read()
	require.Equal(t, byte(0x90), h)
	require.Equal(t, []byte{0, 3, 1, 1, 0x80}, body, "the third would make 90000 > 65535")
}

// Row 24: a SUBSCRIBE with no filter is a protocol error [MQTT-3.8.3-3].
func TestMQTT_3_8_3_3_EmptySubscribe(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	r := dialRaw(t, e)
	r.send(connect311...)
	r.connack()
	r.send(0x82, 2, 0, 1)
	r.closed()
}

// Garbage after CONNECT, from many connections, costs those connections
// and never the broker: it still serves a well-behaved client afterwards.
func TestMQTTGarbageNeverCrashesBroker(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		r := dialRaw(t, e)
		if i%2 == 0 {
			r.send(connect311...)
		}
		junk := make([]byte, 1+rng.IntN(300))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		_, _ = r.c.Write(junk)
		r.c.Close()
	}
	sub, _ := dial5(t, e, pahoConnect("after"))
	sub.sub(t, "ok", 1)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "ok", 1, false, "alive")
	require.Equal(t, "alive", string(sub.next(t).Payload))
}
