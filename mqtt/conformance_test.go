package mqtt_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

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
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
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
