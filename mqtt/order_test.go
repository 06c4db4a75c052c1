package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// Item 3 of issue 17 (paho's test_subscribe_options, no-local part, and
// test_request_response): client B sends SUBSCRIBE and, without waiting
// for SUBACK, client A publishes. A broker reading its sockets in arrival
// order takes B's SUBSCRIBE first, so B gets A's messages: SUBACK, then
// each of them once, in order [MQTT-4.6.0-5/-6] (recent.go). Two raw
// clients, no waits between the two sends, both protocol versions.
func TestMQTTSubscribeTakesEffectBeforeLaterPublish(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			e := start(t, broker.Options{}, mqtt.Options{})
			a := rawClient(t, e, &packet.ConnectPacket{Version: v, ClientID: []byte("a"), CleanStart: true})
			const rounds, msgs = 30, 4
			for i := range rounds {
				topic := fmt.Sprintf("order/%d", i)
				b := rawClient(t, e, &packet.ConnectPacket{Version: v, ClientID: []byte(fmt.Sprint("b", i)), CleanStart: true})
				b.send(packet.AppendSubscribe(nil, v, &packet.SubscribePacket{PacketID: 1,
					Subs: []packet.Subscription{{Filter: []byte(topic), QoS: 1}}})...)
				var pubs []byte
				for j := range msgs {
					pubs = packet.AppendPublish(pubs, v, &packet.PublishPacket{Topic: []byte(topic), QoS: byte(j % 2), PacketID: uint16(j + 1),
						Payload: []byte{byte('0' + j)}})
				}
				a.send(pubs...)
				h, _ := b.read()
				require.Equal(t, byte(0x90), h, "round %d: SUBACK first", i)
				for j := range msgs {
					h, body := b.read()
					require.Equal(t, byte(0x30), h&0xF0, "round %d: message %d is a PUBLISH", i, j)
					require.Equal(t, byte('0'+j), body[len(body)-1], "round %d: in order", i)
					if h&0x06 != 0 { // QoS 1: acknowledge
						b.send(0x40, 2, body[len(topic)+2], body[len(topic)+3])
					}
				}
				b.settled() // PINGRESP next: no second copy
				b.c.Close()
				for range msgs / 2 {
					h, _ := a.read() // a's PUBACKs
					require.Equal(t, byte(0x40), h)
				}
			}
		})
	}
}

// The same with paho.golang for both clients: the publisher publishes
// the moment the subscriber's SUBSCRIBE has been written to its socket,
// while the subscriber's Subscribe call still waits for SUBACK.
func TestMQTTSubscribeThenOtherPublishPaho(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	wrote := make(chan struct{}, 1)
	got := make(chan string, 16)
	b := paho.NewClient(paho.ClientConfig{
		Conn: subscribeSignal{Conn: nc, wrote: wrote},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- string(pr.Packet.Payload)
			return true, nil
		}},
	})
	_, err = b.Connect(ctx, pahoConnect("b"))
	require.NoError(t, err)
	defer b.Disconnect(&paho.Disconnect{})
	a, _ := dial5(t, e, pahoConnect("a"))
	for i := range 20 {
		topic := fmt.Sprintf("paho/order/%d", i)
		done := make(chan error, 1)
		go func() {
			_, err := b.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
			done <- err
		}()
		<-wrote
		_, err := a.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
		require.NoError(t, err)
		require.NoError(t, <-done)
		select {
		case p := <-got:
			require.Equal(t, topic, p, "round %d", i)
		case <-ctx.Done():
			t.Fatalf("round %d: the message published after SUBSCRIBE was not delivered", i)
		}
	}
}

// subscribeSignal is a client's connection that says when a SUBSCRIBE
// packet has been written.
type subscribeSignal struct {
	net.Conn
	wrote chan struct{}
}

func (c subscribeSignal) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if len(p) > 0 && p[0] == 0x82 {
		c.wrote <- struct{}{}
	}
	return n, err
}

// startCatchUp is a broker with gateUsers whose new subscriptions catch
// up on an hour of publishes: what a publish read just before a
// SUBSCRIBE gets, made certain.
func startCatchUp(t *testing.T) *env {
	t.Helper()
	a, err := auth.New(auth.Options{Users: gateUsers})
	require.NoError(t, err)
	return start(t, broker.Options{Authenticator: a}, mqtt.WithRecentWindow(mqtt.Options{}, time.Hour))
}

func loginRaw(t *testing.T, e *env, id, user string) *raw {
	return rawClient(t, e, &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: true,
		UsernameFlag: true, PasswordFlag: true, Username: []byte(user), Password: []byte(gatePassword(t, user))})
}

func rawPub(r *raw, topic, payload string, retain bool) {
	r.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte(topic), Retain: retain, Payload: []byte(payload)})...)
}

// topicOf is the topic of a 5.0 PUBLISH body (no alias).
func topicOf(body []byte) string { return string(body[2 : 2+(int(body[0])<<8|int(body[1]))]) }

// A caught-up message passes the broker's way out like every late
// delivery: the subscriber's identity may not receive secret/x (peeker
// denies secret.>), so of the two messages published before its
// SUBSCRIBE only open/x reaches its new "#" subscription. Its own
// earlier publish is not caught up (it came before its SUBSCRIBE).
func TestMQTTCatchUpPassesTheGate(t *testing.T) {
	e := startCatchUp(t)
	sub := loginRaw(t, e, "peeker", "peeker")
	pub := loginRaw(t, e, "gus", "gus")
	rawPub(sub, "own/x", "mine", false)
	sub.settled()
	rawPub(pub, "secret/x", "s", false)
	rawPub(pub, "open/x", "o", false)
	pub.settled() // both routed, to nobody
	sub.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 1,
		Subs: []packet.Subscription{{Filter: []byte("#")}}})...)
	h, _ := sub.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	h, body := sub.read()
	require.Equal(t, byte(0x30), h, "a PUBLISH")
	require.Equal(t, "open/x", topicOf(body), "secret/x is not caught up, nor the subscriber's own own/x")
	sub.settled()
}

// A retained message published before SUBSCRIBE reaches a new
// subscription once, as the retained replay (RETAIN 1), and a message an
// older overlapping subscription already delivered is not sent again
// through the new one [MQTT-3.3.4-2].
func TestMQTTCatchUpOnce(t *testing.T) {
	e := startCatchUp(t)
	sub := loginRaw(t, e, "s", "gus")
	pub := loginRaw(t, e, "p", "gus")
	rawSub(t, sub, packet.V5, "ov/#", 0)
	rawPub(pub, "ret/x", "r", true)
	rawPub(pub, "ov/x", "live", false)
	pub.settled()
	h, body := sub.read()
	require.Equal(t, byte(0x30), h)
	require.Equal(t, "ov/x", topicOf(body), "delivered live through ov/#")

	sub.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 2,
		Subs: []packet.Subscription{{Filter: []byte("ret/+")}, {Filter: []byte("ov/+")}}})...)
	h, _ = sub.read()
	require.Equal(t, byte(0x90), h, "SUBACK")
	h, body = sub.read()
	require.Equal(t, byte(0x31), h, "the retained replay, RETAIN set")
	require.Equal(t, "ret/x", topicOf(body))
	sub.settled() // nothing else: no catch-up copy of ret/x or ov/x
}
