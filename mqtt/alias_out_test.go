package mqtt_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// aliasSub connects a raw 5.0 subscriber to "al/#" whose CONNECT allows
// max topic aliases (absent when 0).
func aliasSub(t *testing.T, e *env, id string, max uint16) *raw {
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: true}
	if max > 0 {
		cp.Props.SetTopicAliasMaximum(max)
	}
	r := rawClient(t, e, cp)
	rawSub(t, r, packet.V5, "al/#", 0)
	return r
}

// aliased is the PUBLISH a subscriber gets for topic "al/<x>" with
// payload p: the topic (or none when known is set) and topic alias a.
func aliased(x byte, a byte, known bool, p byte) []byte {
	if known {
		return []byte{0x30, 7, 0, 0, 3, 0x23, 0, a, p}
	}
	return []byte{0x30, 11, 0, 4, 'a', 'l', '/', x, 3, 0x23, 0, a, p}
}

// Item 4 of issue 17 (paho's test_server_topic_alias): the server gives
// the topics it sends aliases when the client allows them: the first
// PUBLISH with the topic and the alias, later ones the alias alone
// [MQTT-3.3.2-12]; never more than the client's maximum [MQTT-3.1.2-26]
// (the least recently used alias is reassigned); none to a client that
// allows none [MQTT-3.1.2-27]; a new connection starts without them
// [MQTT-3.3.2-7].
func TestMQTT_3_1_2_26_ServerTopicAliases(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	s := aliasSub(t, e, "s", 2)
	none := aliasSub(t, e, "n", 0)
	p := connect5As(t, e, "p")
	for i, x := range []byte("aabcba") {
		p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte{'a', 'l', '/', x}, Payload: []byte{'1' + byte(i)}})...)
	}
	for _, want := range [][]byte{
		aliased('a', 1, false, '1'),
		aliased('a', 1, true, '2'),
		aliased('b', 2, false, '3'),
		aliased('c', 1, false, '4'), // al/a was used least recently
		aliased('b', 2, true, '5'),
		aliased('a', 1, false, '6'), // al/c was
	} {
		require.Equal(t, want, s.next())
	}
	for i, x := range []byte("aabcba") {
		require.Equal(t, []byte{0x30, 8, 0, 4, 'a', 'l', '/', x, 0, '1' + byte(i)}, none.next(), "no alias")
	}

	s.c.Close()
	s = aliasSub(t, e, "s", 2)
	p.send(packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: []byte("al/b"), Payload: []byte("7")})...)
	require.Equal(t, aliased('b', 1, false, '7'), s.next(), "the new connection's first alias")
}

// paho.golang's router resolves the aliases: every message reaches the
// handler of its own topic, in order.
func TestMQTT_3_3_2_12_ServerTopicAliasesPaho(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	aliasedN := 0
	done := make(chan struct{})
	router := paho.NewStandardRouter()
	for _, topic := range []string{"al/a", "al/b"} {
		router.RegisterHandler(topic, func(m *paho.Publish) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, topic+"="+string(m.Payload))
			if m.Properties != nil && m.Properties.TopicAlias != nil {
				aliasedN++
			}
			if len(got) == 4 {
				close(done)
			}
		})
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, Router: router})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	max := uint16(4)
	_, err = c.Connect(ctx, &paho.Connect{ClientID: "s", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: &max}})
	require.NoError(t, err)
	defer c.Disconnect(&paho.Disconnect{})
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "al/+", QoS: 1}}})
	require.NoError(t, err)
	pub, _ := dial5(t, e, pahoConnect("p"))
	for _, m := range []string{"al/a=1", "al/b=2", "al/a=3", "al/b=4"} {
		topic, payload, _ := strings.Cut(m, "=")
		pub.pub(t, topic, 1, false, payload)
	}
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("not every message arrived")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"al/a=1", "al/b=2", "al/a=3", "al/b=4"}, got)
	require.Equal(t, 4, aliasedN, "every PUBLISH carried an alias")
}

// BenchmarkMQTTTopicAliasBytes streams QoS 0 messages with a 64-byte
// topic and 16-byte payloads to two raw 5.0 subscribers, one allowing
// topic aliases, and reports the bytes each received per message.
func BenchmarkMQTTTopicAliasBytes(b *testing.B) {
	e := start(b, broker.Options{}, mqtt.Options{})
	topic := []byte("bench/" + strings.Repeat("t", 58))
	dial := func(id string, aliases uint16) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", e.mqtt.Addr().String())
		require.NoError(b, err)
		b.Cleanup(func() { c.Close() })
		cp := &packet.ConnectPacket{Version: packet.V5, CleanStart: true, ClientID: []byte(id)}
		if aliases > 0 {
			cp.Props.SetTopicAliasMaximum(aliases)
		}
		_, err = c.Write(packet.AppendConnect(nil, cp))
		require.NoError(b, err)
		br := bufio.NewReaderSize(c, 64<<10)
		r := &raw{t: b, c: c, br: br}
		r.read() // CONNACK
		if id != "pub" {
			r.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: topic}}})...)
			r.read() // SUBACK
			_ = c.SetReadDeadline(time.Time{})
		}
		return c, br
	}
	_, plain := dial("plain", 0)
	_, alias := dial("alias", 16)
	pub, _ := dial("pub", 0)
	msg := packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{Topic: topic, Payload: make([]byte, 16)})
	batch := make([]byte, 0, len(msg)*256)
	for range 256 {
		batch = append(batch, msg...)
	}
	// Every delivered PUBLISH to plain is len(msg) long; to alias each
	// carries the alias (3 bytes of properties more), and all but the
	// first no topic.
	full := int64(len(msg)) * int64(b.N)
	short := full + 3*int64(b.N) - int64(b.N-1)*int64(len(topic))
	counts := make(chan error, 2)
	go func() { _, err := io.CopyN(io.Discard, plain, full); counts <- err }()
	go func() { _, err := io.CopyN(io.Discard, alias, short); counts <- err }()
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += 256 {
		n := min(256, b.N-sent)
		if _, err := pub.Write(batch[:n*len(msg)]); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, <-counts)
	require.NoError(b, <-counts)
	b.StopTimer()
	b.ReportMetric(float64(full)/float64(b.N), "B/msg-plain")
	b.ReportMetric(float64(short)/float64(b.N), "B/msg-aliased")
	b.ReportMetric(100*(1-float64(short)/float64(full)), "%saved")
}
