package mqtt_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
)

// Checklist row 27, the server side of Receive Maximum (5.0 §3.3.4,
// §4.9; the client's own Receive Maximum: TestMQTT_3_3_4_9_ReceiveMaximum
// in conformance_test.go): a client may
// have at most the server's Receive Maximum QoS 1 and 2 PUBLISHes
// unacknowledged [MQTT-3.3.4-7]; one more ends the connection with
// DISCONNECT 0x93. Unacknowledged means no PUBACK or PUBCOMP sent yet: a
// QoS 2 PUBLISH counts until PUBREL, a QoS 1 one until its PUBACK leaves,
// which with a group-committing store is after the commit.

// recvMaxDisconnect is DISCONNECT 0x93 with the Reason String the server
// sends for a Receive Maximum of max.
func recvMaxDisconnect(max int) []byte {
	return disconnectWithReason(0x93, fmt.Sprintf("more than Receive Maximum (%d) QoS 1 and 2 PUBLISH packets unacknowledged", max))
}

// qos12 is a 5.0 PUBLISH to topic "t" at qos with packet id id and a
// one-byte payload.
func qos12(qos byte, id uint16, dup bool) []byte {
	first := byte(0x30) | qos<<1
	if dup {
		first |= 0x08
	}
	return []byte{first, 7, 0, 1, 't', byte(id >> 8), byte(id), 0, 'x'}
}

// expectPacket reads one packet and checks its exact bytes.
func (r *raw) expectPacket(want []byte, msg string) {
	r.t.Helper()
	h, body := r.read()
	got := append([]byte{h}, encodeLen(len(body))...)
	require.Equal(r.t, want, append(got, body...), msg)
}

func encodeLen(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// connectRecv5 connects a raw 5.0 client "c" (clean start) and returns
// its CONNACK's Receive Maximum.
func connectRecv5(t *testing.T, e *env) (*raw, uint16) {
	t.Helper()
	r := dialRaw(t, e)
	r.send(connect5...)
	h, body := r.read()
	require.Equal(t, byte(0x20), h, "CONNACK")
	var d packet.Decoder
	ack, err := d.DecodeConnack(append(append([]byte{h}, encodeLen(len(body))...), body...), packet.V5)
	require.NoError(t, err)
	require.Zero(t, ack.Code)
	rm, ok := ack.Props.ReceiveMaximum()
	require.True(t, ok, "CONNACK announces the server's Receive Maximum")
	return r, rm
}

// TestMQTT_3_3_4_7_ReceiveMaximumExceeded: the QoS 2 PUBLISH past the
// server's Receive Maximum, with the earlier ones awaiting PUBREL, gets
// DISCONNECT 0x93 and the connection closes. This is paho's
// test_flow_control2, which used to hang: the server announced 65535,
// and paho's client, whose packet identifiers run from 1 to 65534, spins
// forever looking for a free one to send the 65536th PUBLISH with.
func TestMQTT_3_3_4_7_ReceiveMaximumExceeded(t *testing.T) {
	t.Run("QoS 2 over the default", func(t *testing.T) {
		e := start(t, broker.Options{}, mqtt.Options{})
		r, rm := connectRecv5(t, e)
		require.Equal(t, uint16(mqtt.DefaultReceiveMaximum), rm)
		var burst []byte
		for id := 1; id <= int(rm)+1; id++ {
			burst = append(burst, qos12(2, uint16(id), false)...)
		}
		r.send(burst...)
		for id := 1; id <= int(rm); id++ {
			r.expectPacket([]byte{0x50, 2, byte(id >> 8), byte(id)}, "PUBREC")
			// As paho's client: each PUBREC read is answered, though the
			// server has stopped reading. The DISCONNECT still arrives
			// (the server drains what comes after it, no reset).
			r.send(0x62, 2, byte(id>>8), byte(id))
		}
		r.expectPacket(recvMaxDisconnect(int(rm)), "DISCONNECT 0x93")
		r.closed()
	})
	t.Run("QoS 2, PUBREL frees a slot", func(t *testing.T) {
		e := start(t, broker.Options{}, mqtt.Options{ReceiveMaximum: 2})
		r, rm := connectRecv5(t, e)
		require.Equal(t, uint16(2), rm)
		r.send(qos12(2, 1, false)...)
		r.expectPacket([]byte{0x50, 2, 0, 1}, "PUBREC 1")
		r.send(qos12(2, 2, false)...)
		r.expectPacket([]byte{0x50, 2, 0, 2}, "PUBREC 2")
		r.send(qos12(2, 2, true)...) // a repeat before PUBREL is no new PUBLISH [MQTT-4.3.3-9]
		r.expectPacket([]byte{0x50, 2, 0, 2}, "PUBREC 2 again")
		r.send(0x62, 2, 0, 1) // PUBREL 1
		r.expectPacket([]byte{0x70, 2, 0, 1}, "PUBCOMP 1")
		r.send(qos12(2, 3, false)...)
		r.expectPacket([]byte{0x50, 2, 0, 3}, "PUBREC 3: PUBCOMP returned a slot")
		r.send(qos12(1, 4, false)...) // QoS 1 and 2 share the quota
		r.expectPacket(recvMaxDisconnect(2), "DISCONNECT 0x93")
		r.closed()
	})
	t.Run("3.1.1 has no Receive Maximum", func(t *testing.T) {
		e := start(t, broker.Options{}, mqtt.Options{ReceiveMaximum: 2})
		r := dialRaw(t, e)
		r.send(connect311...)
		_, code := r.connack()
		require.Zero(t, code)
		for id := uint16(1); id <= 3; id++ {
			r.send(0x34, 6, 0, 1, 't', 0, byte(id), 'x')
		}
		for id := byte(1); id <= 3; id++ {
			r.expectPacket([]byte{0x50, 2, 0, id}, "PUBREC")
		}
	})
}

// TestMQTT_3_3_4_7_QoS1UnacknowledgedUntilDurable: a QoS 1 PUBLISH counts
// against the server's Receive Maximum until its PUBACK is sent. With a
// store that has not committed yet, PUBACKs wait, and one PUBLISH past
// the maximum gets DISCONNECT 0x93; once they are sent, the client may
// send as many again. Without such a store a PUBACK leaves at once, so a
// client is never over.
func TestMQTT_3_3_4_7_QoS1UnacknowledgedUntilDurable(t *testing.T) {
	t.Run("held PUBACKs count", func(t *testing.T) {
		g := &gatedStore{Memory: store.NewMemory()}
		t.Cleanup(g.release)
		e := start(t, broker.Options{Store: g}, mqtt.Options{ReceiveMaximum: 2})
		r, _ := connectRecv5(t, e)
		g.hold()
		r.send(append(append(qos12(1, 1, false), qos12(1, 2, false)...), qos12(1, 3, false)...)...)
		r.expectPacket(recvMaxDisconnect(2), "DISCONNECT 0x93 before the held PUBACKs")
		r.closed()
	})
	t.Run("sent PUBACKs return the quota", func(t *testing.T) {
		g := &gatedStore{Memory: store.NewMemory()}
		t.Cleanup(g.release)
		e := start(t, broker.Options{Store: g}, mqtt.Options{ReceiveMaximum: 2})
		r, _ := connectRecv5(t, e)
		g.hold()
		r.send(append(qos12(1, 1, false), qos12(1, 2, false)...)...)
		g.release()
		r.expectPacket([]byte{0x40, 2, 0, 1}, "PUBACK 1")
		r.expectPacket([]byte{0x40, 2, 0, 2}, "PUBACK 2")
		r.send(append(qos12(1, 3, false), qos12(1, 4, false)...)...)
		r.expectPacket([]byte{0x40, 2, 0, 3}, "PUBACK 3")
		r.expectPacket([]byte{0x40, 2, 0, 4}, "PUBACK 4")
	})
	t.Run("acknowledged at once", func(t *testing.T) {
		e := start(t, broker.Options{}, mqtt.Options{ReceiveMaximum: 2})
		r, _ := connectRecv5(t, e)
		var burst []byte
		for id := uint16(1); id <= 5; id++ {
			burst = append(burst, qos12(1, id, false)...)
		}
		r.send(burst...)
		for id := byte(1); id <= 5; id++ {
			r.expectPacket([]byte{0x40, 2, 0, id}, "PUBACK")
		}
	})
}

// TestMQTT_3_3_4_7_PahoKeepsToReceiveMaximum: paho.golang reads the
// Receive Maximum from CONNACK and never has more QoS 2 PUBLISHes in
// flight, so a burst of them all complete on one connection.
func TestMQTT_3_3_4_7_PahoKeepsToReceiveMaximum(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{ReceiveMaximum: 3})
	sub, _ := dial5(t, e, pahoConnect("sub"))
	sub.sub(t, "rm/#", 2)
	var lost sync.Once
	gone := make(chan struct{})
	nc := dialTCP(t, e)
	pub := paho.NewClient(paho.ClientConfig{Conn: nc,
		OnServerDisconnect: func(*paho.Disconnect) { lost.Do(func() { close(gone) }) }})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ack, err := pub.Connect(ctx, pahoConnect("pub"))
	require.NoError(t, err)
	require.Equal(t, uint16(3), *ack.Properties.ReceiveMaximum)
	t.Cleanup(func() { _ = pub.Disconnect(&paho.Disconnect{}) })
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("rm/%d", i), QoS: 2, Payload: []byte("x")})
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	for range n {
		sub.next(t)
	}
	select {
	case <-gone:
		t.Fatal("the server disconnected a client that kept to its Receive Maximum")
	default:
	}
}
