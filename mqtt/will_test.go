package mqtt_test

import (
	"encoding/binary"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// rawClient connects a raw client with CONNECT cp and checks CONNACK 0.
func rawClient(t *testing.T, e *env, cp *packet.ConnectPacket) *raw {
	t.Helper()
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 60
	}
	r := dialRaw(t, e)
	r.send(packet.AppendConnect(nil, cp)...)
	_, code := r.connack()
	require.Zero(t, code)
	return r
}

// rawSub subscribes r to filter (QoS 0, packet id 1) and checks the SUBACK.
func rawSub(t *testing.T, r *raw, v packet.Version, filter string, qos byte) {
	t.Helper()
	r.send(packet.AppendSubscribe(nil, v, &packet.SubscribePacket{PacketID: 1,
		Subs: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}})...)
	h, body := r.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	require.Equal(t, qos, body[len(body)-1])
	r.settled()
}

// settled waits until the server handled everything r sent before: a
// PINGREQ is answered after them, retained replays included (they follow
// the SUBACK on the read loop).
func (r *raw) settled() {
	r.t.Helper()
	r.send(0xC0, 0)
	h, _ := r.read()
	require.Equal(r.t, byte(0xD0), h, "PINGRESP")
}

// willProps5 is the wire form of the will properties TestWillProperties
// sends, message expiry first (its four bytes at offset 3): payload
// format 1, expiry 100 s, content type, response topic, correlation data
// and two user properties in an order that is not sorted.
func willProps5(expiry uint32) []byte {
	p := []byte{0x01, 1, 0x02, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(p[3:], expiry)
	p = append(p, 0x03, 0, 10)
	p = append(p, "text/plain"...)
	p = append(p, 0x08, 0, 7)
	p = append(p, "w/reply"...)
	p = append(p, 0x09, 0, 2, 0xCA, 0xFE)
	p = append(p, 0x26, 0, 1, 'z', 0, 1, '1')
	p = append(p, 0x26, 0, 1, 'a', 0, 1, '2')
	return p
}

// publish5 is a QoS 0 PUBLISH to "w/t" with payload "bye" and props, as
// the server writes it to a 5.0 client.
func publish5(retain bool, props []byte) []byte {
	body := []byte{0, 3, 'w', '/', 't', byte(len(props))}
	body = append(body, props...)
	body = append(body, "bye"...)
	h := byte(0x30)
	if retain {
		h |= 1
	}
	return append([]byte{h, byte(len(body))}, body...)
}

// readPublish5 reads a PUBLISH and checks it is publish5(retain, …) with
// a Message Expiry Interval of 100 s less the time it waited, rounded up
// ([MQTT-3.3.2-6]).
func readPublish5(t *testing.T, r *raw, retain bool) {
	t.Helper()
	h, body := r.read()
	got := append([]byte{h, byte(len(body))}, body...)
	require.Greater(t, len(got), 13)
	left := binary.BigEndian.Uint32(got[2+6+3:])
	require.True(t, left > 0 && left <= 100, "message expiry forwarded as the time left: %d", left)
	require.Equal(t, publish5(retain, willProps5(left)), got)
}

// Item 1 of issue 17: a will carries every MQTT 5.0 will property (§3.1.3.2)
// to its subscribers: payload format [MQTT-3.3.2-4], message expiry less
// the time waited [MQTT-3.3.2-6], content type [MQTT-3.3.2-20], response
// topic [MQTT-3.3.2-15], correlation data [MQTT-3.3.2-16] and user
// properties unaltered and in order [MQTT-3.1.3-10], [MQTT-3.3.2-17/-18];
// a retained will keeps them for a later subscriber. A 3.1.1 subscriber
// gets the will without properties.
func TestMQTT_3_1_3_10_WillProperties(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub5 := rawClient(t, e, &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("s5"), CleanStart: true})
	rawSub(t, sub5, packet.V5, "w/t", 0)
	sub3 := rawClient(t, e, &packet.ConnectPacket{Version: packet.V311, ClientID: []byte("s3"), CleanStart: true})
	rawSub(t, sub3, packet.V311, "w/t", 0)

	// The will's CONNECT, exact bytes: client id "w", will QoS 0 retained
	// on "w/t" with payload "bye" and willProps5(100).
	wp := willProps5(100)
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x26, 0, 60, 0, 0, 1, 'w', byte(len(wp))}
	body = append(body, wp...)
	body = append(body, 0, 3, 'w', '/', 't', 0, 3, 'b', 'y', 'e')
	w := dialRaw(t, e)
	w.send(append([]byte{0x10, byte(len(body))}, body...)...)
	_, code := w.connack()
	require.Zero(t, code)
	w.c.Close() // no DISCONNECT: the will is sent

	readPublish5(t, sub5, false) // live: RETAIN 0 [MQTT-3.3.1-9]
	h, b3 := sub3.read()
	require.Equal(t, []byte{0x30, 8, 0, 3, 'w', '/', 't', 'b', 'y', 'e'}, append([]byte{h, byte(len(b3))}, b3...))

	late := rawClient(t, e, &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("late"), CleanStart: true})
	late.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 1,
		Subs: []packet.Subscription{{Filter: []byte("w/t")}}})...)
	h, _ = late.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	readPublish5(t, late, true) // the retained will, with its properties [MQTT-3.3.1-8]
}

// The same with paho.golang on both sides: user properties (in order) and
// the will delay, sent after it when the session ends (5.0 §3.1.3.2.2).
// paho.golang encodes only these two of a will's properties.
func TestMQTT_3_1_3_10_WillPropertiesPaho(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "w/p", 1)
	delay := uint32(1)
	cp := pahoConnect("w")
	cp.WillMessage = &paho.WillMessage{Topic: "w/p", QoS: 1, Payload: []byte("gone")}
	cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay,
		User: paho.UserProperties{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}}}
	w, _ := dial5(t, e, cp)
	// A DISCONNECT with reason 0x04 sends the will.
	require.NoError(t, w.c.Disconnect(&paho.Disconnect{ReasonCode: 0x04}))
	m := sub.next(t)
	require.Equal(t, "gone", string(m.Payload))
	require.NotNil(t, m.Properties)
	require.Equal(t, paho.UserProperties{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}}, m.Properties.User)
}
