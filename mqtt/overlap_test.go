package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// rawSubID subscribes r (5.0) to filter with subscription identifier id
// and options opts (the SUBSCRIBE options byte: QoS, no-local, retain as
// published, retain handling), packet id pid.
func rawSubID(t *testing.T, r *raw, pid uint16, filter string, opts byte, id uint32) {
	t.Helper()
	sp := packet.Subscription{Filter: []byte(filter), QoS: opts & 3, NoLocal: opts&4 != 0, RetainAsPublished: opts&8 != 0,
		RetainHandling: opts >> 4 & 3}
	p := &packet.SubscribePacket{PacketID: pid, Subs: []packet.Subscription{sp}}
	if id > 0 {
		p.Props.SubscriptionIDs = []uint32{id}
	}
	r.send(packet.AppendSubscribe(nil, packet.V5, p)...)
	h, body := r.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	require.Equal(t, opts&3, body[len(body)-1])
	r.settled()
}

// next reads one packet and returns it whole (first byte, length, body).
func (r *raw) next() []byte {
	r.t.Helper()
	h, body := r.read()
	return append([]byte{h, byte(len(body))}, body...)
}

func connect5As(t *testing.T, e *env, id string) *raw {
	return rawClient(t, e, &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: true})
}

// Item 2 of issue 17 (paho's test_subscribe_identifiers): TopicA (id 2,
// QoS 0) and TopicA/# (id 3, QoS 2) overlap; a QoS 1 PUBLISH to TopicA
// reaches the client once, at QoS 1, the highest the matching
// subscriptions allow [MQTT-3.3.4-2], with both identifiers
// [MQTT-3.3.4-3/-4]. A message only one subscription matches carries its
// identifier alone [MQTT-3.3.4-5].
func TestMQTT_3_3_4_2_OverlapOneCopyAllIdentifiers(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	s := connect5As(t, e, "s")
	rawSubID(t, s, 1, "TopicA", 0, 2)
	rawSubID(t, s, 2, "TopicA/#", 2, 3)
	p := connect5As(t, e, "p")
	p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("TopicA"), QoS: 1, PacketID: 7, Payload: []byte("x")})...)
	p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("TopicA/z"), Payload: []byte("y")})...)

	require.Equal(t, []byte{0x32, 16, 0, 6, 'T', 'o', 'p', 'i', 'c', 'A', 0, 1, 4, 0x0B, 2, 0x0B, 3, 'x'}, s.next(),
		"one PUBLISH, QoS 1, subscription identifiers 2 and 3")
	require.Equal(t, []byte{0x30, 14, 0, 8, 'T', 'o', 'p', 'i', 'c', 'A', '/', 'z', 2, 0x0B, 3, 'y'}, s.next(),
		"the next packet is the next message: no second copy")
}

// no-local, retain-as-published and shared subscriptions with overlaps:
// a no-local subscription does not count for the session's own message
// (only the other's identifier) [MQTT-3.8.3-3]; one retain-as-published
// subscription keeps RETAIN on the one copy [MQTT-3.3.1-12]; a shared
// subscription delivers its own copy (5.0 §4.8.2).
func TestMQTT_3_3_4_2_OverlapNoLocalRetainShared(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	s := connect5As(t, e, "s")
	rawSubID(t, s, 1, "nl/#", 0x04, 4) // no-local
	rawSubID(t, s, 2, "nl/+", 0, 5)
	s.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("nl/a"), Payload: []byte("1")})...)
	require.Equal(t, []byte{0x30, 10, 0, 4, 'n', 'l', '/', 'a', 2, 0x0B, 5, '1'}, s.next())

	rawSubID(t, s, 3, "rp/#", 0x08, 6) // retain as published
	rawSubID(t, s, 4, "rp/+", 0, 7)
	p := connect5As(t, e, "p")
	p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("rp/a"), Retain: true, Payload: []byte("2")})...)
	require.Equal(t, []byte{0x31, 12, 0, 4, 'r', 'p', '/', 'a', 4, 0x0B, 6, 0x0B, 7, '2'}, s.next())

	rawSubID(t, s, 5, "$share/g/sh/a", 0, 8)
	rawSubID(t, s, 6, "sh/+", 0, 9)
	p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("sh/a"), Payload: []byte("3")})...)
	got := map[byte]bool{}
	for range 2 {
		b := s.next()
		require.Equal(t, []byte{0x30, 10, 0, 4, 's', 'h', '/', 'a', 2, 0x0B}, b[:10])
		got[b[10]] = true
	}
	require.Equal(t, map[byte]bool{8: true, 9: true}, got, "the shared subscription's copy and the other one")
}

// paho.golang: one copy at the highest QoS. (paho.golang keeps one
// subscription identifier per PUBLISH: the raw test checks both.)
func TestMQTT_3_3_4_2_OverlapPaho(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	sub.sub(t, "ov/+", 0)
	sub.sub(t, "ov/#", 2)
	sub.sub(t, "ov/b", 1)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "ov/b", 2, false, "x")
	pub.pub(t, "ov/c", 0, false, "marker")
	m := sub.next(t)
	require.Equal(t, "x", string(m.Payload))
	require.Equal(t, byte(2), m.QoS)
	require.Equal(t, "marker", string(sub.next(t).Payload), "no second copy")
}

// paho.mqtt.golang (3.1.1): one copy at the highest matching QoS
// ([MQTT-3.3.5-1]); NATS subscribers keep one MSG per subscription.
func TestMQTT_3_3_5_1_OverlapPahoV311AndNATS(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	url := "tcp://" + e.mqtt.Addr().String()
	got := make(chan mqtt3.Message, 100)
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID("v3").SetCleanSession(true).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { got <- m })
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(waitLong))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	for f, q := range map[string]byte{"ov/+": 0, "ov/#": 1, "+/b": 2} {
		tok := c.Subscribe(f, q, nil) // nil: every PUBLISH reaches the default handler once
		require.True(t, tok.WaitTimeout(waitLong))
		require.NoError(t, tok.Error())
	}
	nc, err := nats.Connect("nats://" + e.nats.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	msgs := make(chan *nats.Msg, 10)
	for _, s := range []string{"ov.>", "ov.b", "*.b"} {
		_, err := nc.ChanSubscribe(s, msgs)
		require.NoError(t, err)
	}
	require.NoError(t, nc.Flush())

	tok = c.Publish("ov/b", 1, false, "x")
	require.True(t, tok.WaitTimeout(waitLong))
	require.NoError(t, tok.Error())
	tok = c.Publish("ov/c", 0, false, "marker")
	require.True(t, tok.WaitTimeout(waitLong))
	for _, want := range []struct {
		payload string
		qos     byte
	}{{"x", 1}, {"marker", 0}} {
		select {
		case m := <-got:
			require.Equal(t, want.payload, string(m.Payload()), "one copy, then the marker")
			require.Equal(t, want.qos, m.Qos())
		case <-time.After(waitLong):
			t.Fatalf("%q not delivered", want.payload)
		}
	}
	for range 3 { // the NATS client: one MSG per subscription
		select {
		case m := <-msgs:
			require.Equal(t, "x", string(m.Data))
		case <-time.After(waitLong):
			t.Fatal("a NATS subscription got nothing")
		}
	}
	require.Equal(t, "marker", string((<-msgs).Data))
}

// The paho.golang check for subscription identifiers on one copy.
func TestMQTT_3_3_4_3_OverlapSubscriptionIDPaho(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, _ := dial5(t, e, pahoConnect("s"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for i, f := range []string{"id/a", "id/#"} {
		id := i + 2
		_, err := sub.c.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
			Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
		require.NoError(t, err)
	}
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "id/a", 1, false, "x")
	pub.pub(t, "id/b", 1, false, "y")
	m := sub.next(t)
	require.Equal(t, "x", string(m.Payload))
	require.NotNil(t, m.Properties.SubscriptionIdentifier)
	m = sub.next(t)
	require.Equal(t, "y", string(m.Payload), "no second copy of x")
	require.Equal(t, 3, *m.Properties.SubscriptionIdentifier)
}
