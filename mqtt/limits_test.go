package mqtt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/websocket"
)

// Issue 16: the ways a client, authenticated or not, could make the broker
// hold memory without bound. Each test asserts a bound on the broker's own
// accounting (mqtt.Stats), not on RSS.

const waitLong = 10 * time.Second // generous: a busy 2-core machine

// startWS is start plus a WebSocket listener serving MQTT.
func startWS(t *testing.T, bo broker.Options, mo mqtt.Options) (*env, *websocket.Transport) {
	t.Helper()
	e := start(t, bo, mo)
	wt, err := websocket.New(websocket.Options{Host: "127.0.0.1", MQTT: e.mqtt})
	require.NoError(t, err)
	require.NoError(t, wt.Listen())
	require.NoError(t, e.b.Start(wt))
	return e, wt
}

// wsConn is a raw MQTT-over-WebSocket client: each Write is one binary
// frame, Read returns the payloads of the server's frames.
type wsConn struct {
	net.Conn
	buf []byte
}

func (w *wsConn) Write(p []byte) (int, error) { return len(p), wsutil.WriteClientBinary(w.Conn, p) }

func (w *wsConn) Read(p []byte) (int, error) {
	for len(w.buf) == 0 {
		data, _, err := wsutil.ReadServerData(w.Conn)
		if err != nil {
			if isTimeout(err) {
				return 0, err
			}
			return 0, io.EOF // a close frame, or the socket closed after it
		}
		w.buf = data
	}
	n := copy(p, w.buf)
	w.buf = w.buf[n:]
	return n, nil
}

func dialWSRaw(t *testing.T, wt *websocket.Transport) *raw {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	c, _, _, err := d.Dial(context.Background(), "ws://"+wt.Addr().String()+"/mqtt")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	wc := &wsConn{Conn: c}
	return &raw{t: t, c: wc, br: bufio.NewReader(wc)}
}

// dialOver is a raw client over "tcp" or "websocket".
func dialOver(t *testing.T, e *env, wt *websocket.Transport, over string) *raw {
	if over == "websocket" {
		return dialWSRaw(t, wt)
	}
	return dialRaw(t, e)
}

// stream writes n bytes in chunks until the server stops reading (an
// error) and reports how many went out.
func stream(c net.Conn, n int) int {
	chunk := make([]byte, 32<<10)
	sent := 0
	_ = c.SetWriteDeadline(time.Now().Add(waitLong))
	for sent < n {
		k, err := c.Write(chunk[:min(len(chunk), n-sent)])
		sent += k
		if err != nil {
			break
		}
	}
	return sent
}

// hugeHeader is a fixed header of packet type first claiming 256 MiB.
func hugeHeader(first byte) []byte { return []byte{first, 0xFF, 0xFF, 0xFF, 0x7F} }

// connectOf is a CONNECT about size bytes long (at most ~128 KiB): a
// will payload of up to 65,000 bytes and a password for the rest.
func connectOf(t *testing.T, v packet.Version, id string, size int) []byte {
	cp := &packet.ConnectPacket{Version: v, ClientID: []byte(id), CleanStart: true, KeepAlive: 30,
		WillFlag: true, WillTopic: []byte("will/t"), UsernameFlag: true, Username: []byte("u"), PasswordFlag: true}
	base := len(packet.AppendConnect(nil, cp))
	rest := size - base - 3 // the remaining length grows by up to 3 bytes
	cp.WillPayload = make([]byte, min(rest, 65000))
	cp.Password = make([]byte, rest-len(cp.WillPayload))
	b := packet.AppendConnect(nil, cp)
	require.InDelta(t, size, len(b), 3)
	return b
}

func stats(e *env) mqtt.Stats { return mqtt.SessionStats(e.b) }

// TestPreConnectFirstByte: a first packet that is not CONNECT closes the
// connection at its first byte, and a CONNECT declaring more than the
// packet limit (max_payload + 64 KiB) is refused from its header, over
// TCP and WebSocket; nothing is buffered for either (issue 16, finding 1:
// 256 MiB headers were buffered in full).
func TestPreConnectFirstByte(t *testing.T) {
	e, wt := startWS(t, broker.Options{}, mqtt.Options{})
	for _, tc := range []struct {
		name  string
		first byte
	}{{"publish first", 0x30}, {"huge connect", 0x10}, {"subscribe first", 0x82}} {
		for _, over := range []string{"tcp", "websocket"} {
			t.Run(tc.name+" over "+over, func(t *testing.T) {
				r := dialOver(t, e, wt, over)
				r.send(hugeHeader(tc.first)...)
				done := make(chan int, 1)
				go func() { done <- stream(r.c, 8<<20) }() // the server stops reading at the header
				r.gone()
				_ = r.c.SetWriteDeadline(time.Now()) // the socket buffers may still take some
				t.Logf("%d bytes written before the server closed", <-done)
				require.Eventually(t, func() bool { return stats(e).PreConnectBytes == 0 }, waitLong, 5*time.Millisecond,
					"buffers of closed connections released: %+v", stats(e))
			})
		}
	}
}

// TestPreConnectBufferGrowsWithTheBytes: before CONNECT the read buffer
// grows as bytes arrive, never to the declared length at once; a large
// will (near max_payload) still gets in, after which the buffer no
// longer counts as unauthenticated.
func TestPreConnectBufferGrowsWithTheBytes(t *testing.T) {
	e, wt := startWS(t, broker.Options{}, mqtt.Options{})
	limit := mqtt.ConnectLimit(mqtt.Options{}, e.b.Options().MaxPayload)
	require.Equal(t, 64<<10+65535, limit)
	for _, over := range []string{"tcp", "websocket"} {
		t.Run(over, func(t *testing.T) {
			r := dialOver(t, e, wt, over)
			cn := connectOf(t, packet.V311, "big-will-"+over, 125<<10) // a will of 65,000 bytes and a long password
			const part = 40 << 10
			r.send(cn[:part]...)
			require.Eventually(t, func() bool { return stats(e).PreConnectBytes >= part }, waitLong, time.Millisecond)
			held := stats(e).PreConnectBytes
			require.LessOrEqual(t, held, int64(2*part), "grown with the bytes received (%d of a declared %d)", part, len(cn))
			r.send(cn[part:]...)
			_, code := r.connack()
			require.Zero(t, code)
			require.Eventually(t, func() bool { return stats(e).PreConnectBytes == 0 }, waitLong, time.Millisecond)
			t.Logf("%s: %d bytes buffered after %d of a %d byte CONNECT", over, held, part, len(cn))
		})
	}
	// A will payload over max_payload, in a CONNECT within the limit, is
	// refused too (5.0: CONNACK 0x95).
	small := start(t, broker.Options{MaxPayload: 1000}, mqtt.Options{})
	r := dialRaw(t, small)
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("w"), CleanStart: true, WillFlag: true,
		WillTopic: []byte("w"), WillPayload: make([]byte, 2000)}
	r.send(packet.AppendConnect(nil, cp)...)
	_, code := r.connack()
	require.Equal(t, byte(packet.PacketTooLarge), code)
	r.closed()
}

// TestPreConnectBudget: connections that have not completed CONNECT hold
// at most the broker's budget together: one that would grow past it is
// closed, and a small CONNECT still gets in meanwhile.
func TestPreConnectBudget(t *testing.T) {
	const budget = 512 << 10
	e := start(t, broker.Options{}, mqtt.WithPreConnectBudget(mqtt.Options{}, budget))
	first := dialRaw(t, e) // the listener serves (its options are the broker's MQTT options)
	first.send(connect311...)
	_, code := first.connack()
	require.Zero(t, code)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var peak int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			peak = max(peak, stats(e).PreConnectBytes)
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	conns := make([]*raw, 10)
	for i := range conns {
		conns[i] = dialRaw(t, e)
		wg.Go(func() {
			cn := connectOf(t, packet.V311, "slow", 125<<10)
			_ = conns[i].c.SetWriteDeadline(time.Now().Add(waitLong))
			_, _ = conns[i].c.Write(cn[:100<<10]) // and never the rest
		})
	}
	wg.Wait()
	// Some were closed, the others hold their buffers: within the budget
	// plus one buffer's growth.
	closed := 0
	for _, r := range conns {
		_ = r.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := r.br.ReadByte(); err != nil && !isTimeout(err) {
			closed++
		}
	}
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("10 connections sent 100 KiB of a 125 KiB CONNECT each: %d closed, peak %d bytes held (budget %d)", closed, peak, budget)
	require.Positive(t, closed, "some were refused")
	require.LessOrEqual(t, peak, int64(budget+(128<<10)))
	r := dialRaw(t, e)
	r.send(connect311...)
	_, code = r.connack()
	require.Zero(t, code, "a small CONNECT gets in while the budget is held")
	for _, r := range conns {
		r.c.Close()
	}
	require.Eventually(t, func() bool { return stats(e).PreConnectBytes == 0 }, waitLong, 5*time.Millisecond)
}

// gone checks the server closed the connection: EOF, or a reset when it
// closed with our bytes unread; not a timeout.
func (r *raw) gone() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(waitLong))
	_, err := io.Copy(io.Discard, r.br)
	require.False(r.t, isTimeout(err), "the server closes the connection: %v", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPublishOverMaxPayload: an MQTT PUBLISH larger than the broker's
// max_payload is refused (5.0: DISCONNECT 0x95; 3.1.1: closed) and never
// reaches the NATS subscribers its max_payload was promised to; the 5.0
// CONNACK announces the packet limit (issue 16, finding 2).
func TestPublishOverMaxPayload(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	nc, err := nats.Connect("nats://" + e.nats.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	require.Equal(t, int64(1<<20), nc.MaxPayload())
	got, err := nc.SubscribeSync("big.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	// paho 5.0: the CONNACK's Maximum Packet Size is the limit.
	_, ack := dial5(t, e, pahoConnect("size"))
	require.NotNil(t, ack.Properties.MaximumPacketSize)
	require.Equal(t, uint32(1<<20+64<<10), *ack.Properties.MaximumPacketSize)

	// Exactly max_payload is delivered.
	pub, _ := dial5(t, e, pahoConnect("ok"))
	pub.pub(t, "big/ok", 1, false, string(make([]byte, 1<<20)))
	m, err := got.NextMsg(waitLong)
	require.NoError(t, err)
	require.Len(t, m.Data, 1<<20)

	for _, tc := range []struct {
		name    string
		payload int
	}{{"5 MiB", 5 << 20}, {"max_payload + 1 within the packet limit", 1<<20 + 1}} {
		t.Run("5.0 "+tc.name, func(t *testing.T) {
			r := dialRaw(t, e)
			r.send(connect5...)
			_, code := r.connack()
			require.Zero(t, code)
			pub := packet.AppendPublish(nil, packet.V5, &packet.PublishPacket{QoS: 1, PacketID: 1, Topic: []byte("big/x"), Payload: make([]byte, tc.payload)})
			go func() { _, _ = r.c.Write(pub) }() // the server stops reading it early
			h, body := r.read()
			require.Equal(t, byte(0xE0), h, "DISCONNECT")
			require.Equal(t, byte(packet.PacketTooLarge), body[0])
			r.gone()
		})
	}
	t.Run("3.1.1 paho", func(t *testing.T) {
		lost := make(chan error, 1)
		o := mqtt3.NewClientOptions().AddBroker("tcp://" + e.mqtt.Addr().String()).SetClientID("v3big").
			SetAutoReconnect(false).SetConnectionLostHandler(func(_ mqtt3.Client, err error) { lost <- err })
		c := mqtt3.NewClient(o)
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(waitLong))
		require.NoError(t, tok.Error())
		c.Publish("big/x", 1, false, make([]byte, 5<<20))
		select {
		case err := <-lost:
			t.Logf("paho 3.1.1 connection lost: %v", err)
		case <-time.After(waitLong):
			t.Fatal("the connection was not closed")
		}
	})
	_, err = got.NextMsg(200 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "nothing over max_payload reached NATS")
}

// subscriber5 is a raw 5.0 client subscribed to filter at QoS 1 that
// never acknowledges; recv is its Receive Maximum (0: none sent).
func subscriber5(t *testing.T, e *env, id, filter string, recv uint16, persistent bool) *raw {
	t.Helper()
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: !persistent, KeepAlive: 60}
	if recv > 0 {
		cp.Props.SetReceiveMaximum(recv)
	}
	if persistent {
		cp.Props.SetSessionExpiryInterval(600)
	}
	r := dialRaw(t, e)
	r.send(packet.AppendConnect(nil, cp)...)
	_, code := r.connack()
	require.Zero(t, code)
	r.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte(filter), QoS: 1}}})...)
	for {
		h, _ := r.read()
		if h == 0x90 {
			return r
		}
	}
}

// drain reads PUBLISH packets in the background (so the socket never
// fills) and counts them.
func drain(r *raw) *countingReader {
	cr := &countingReader{}
	go func() {
		_ = r.c.SetReadDeadline(time.Time{})
		for {
			h, err := r.br.ReadByte()
			if err != nil {
				return
			}
			n, mul := 0, 1
			for {
				b, err := r.br.ReadByte()
				if err != nil {
					return
				}
				n += int(b&0x7F) * mul
				if b&0x80 == 0 {
					break
				}
				mul *= 128
			}
			if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
				return
			}
			if h>>4 == 3 {
				cr.mu.Lock()
				cr.n++
				cr.mu.Unlock()
			}
		}
	}()
	return cr
}

type countingReader struct {
	mu sync.Mutex
	n  int
}

func (c *countingReader) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// logSink collects JSON log lines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *logSink) count(sub string) int { return strings.Count(s.String(), sub) }

// TestQueuedBytesBounded: QoS 1 messages to clients that never
// acknowledge stay within max_queued_bytes per session, whether the
// client's window is max_ack_pending or a Receive Maximum of 1; past it
// new messages are dropped, counted by reason (Stats, /metrics) and
// logged once at Warn (issue 16, finding 3: 4,800 × 64 KB held ~344 MB).
func TestQueuedBytesBounded(t *testing.T) {
	var logs logSink
	const bound = 1 << 20
	e := start(t, broker.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}, mqtt.Options{MaxQueuedBytes: bound})
	never := subscriber5(t, e, "never-acks", "q/a", 0, false)
	one := subscriber5(t, e, "recv-max-1", "q/b", 1, false)
	seen := map[*raw]*countingReader{never: drain(never), one: drain(one)}
	pub, _ := dial5(t, e, pahoConnect("pub"))
	payload := string(make([]byte, 64<<10))
	const n = 80
	for range n {
		pub.pub(t, "q/a", 1, false, payload)
		pub.pub(t, "q/b", 1, false, payload)
	}
	require.Eventually(t, func() bool {
		st := stats(e)
		return st.DroppedBy[mqtt.DropQueueBytes] > 0 && int64(st.Inflight+st.Queued)+st.DroppedBy[mqtt.DropQueueBytes] == 2*n
	}, waitLong, 5*time.Millisecond, "%+v", stats(e))
	st := stats(e)
	t.Logf("%d × 64 KiB to two clients that never acknowledge: %d in flight, %d queued, %d bytes held, %d dropped (queue_bytes); received %d and %d",
		n, st.Inflight, st.Queued, st.QueuedBytes, st.DroppedBy[mqtt.DropQueueBytes], seen[never].count(), seen[one].count())
	require.LessOrEqual(t, st.QueuedBytes, int64(2*bound), "each session within max_queued_bytes")
	require.Equal(t, 1, seen[one].count(), "Receive Maximum 1: one in flight")
	require.Equal(t, 1, logs.count("max_queued_bytes"), "one Warn line for the reason (rate-limited)")

	// /metrics counts them by reason.
	mon := monitor.New(e.b, monitor.Options{MQTT: func() monitor.MQTTStats {
		m := mqtt.SessionStats(e.b)
		return monitor.MQTTStats{Dropped: m.Dropped, DroppedBy: m.DroppedBy, QueuedBytes: m.QueuedBytes, OfflineBytes: m.OfflineBytes}
	}})
	rec := httptest.NewRecorder()
	mon.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	require.Contains(t, body, `busbar_mqtt_dropped_messages_total{reason="queue_bytes"} `+itoa(st.DroppedBy[mqtt.DropQueueBytes]))
	require.Contains(t, body, `busbar_mqtt_dropped_messages_total{reason="offline"} 0`)
	require.Contains(t, body, "busbar_mqtt_queued_bytes "+itoa(st.QueuedBytes))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// offline makes a persistent 5.0 session subscribed to filter at QoS 1
// and disconnects it.
func offline(t *testing.T, e *env, id, filter string) {
	t.Helper()
	sei := uint32(600)
	cl, _ := dial5(t, e, &paho.Connect{ClientID: id, CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	cl.sub(t, filter, 1)
	require.NoError(t, cl.c.Disconnect(&paho.Disconnect{}))
}

// TestOfflineBytesBounded: sessions without a connection hold at most
// max_offline_bytes together; a session that reconnects gets what was
// kept, oldest first, and the accounting returns to zero as it is
// acknowledged.
func TestOfflineBytesBounded(t *testing.T) {
	const bound = 1 << 20
	e := start(t, broker.Options{}, mqtt.Options{MaxOfflineBytes: bound})
	offline(t, e, "off-a", "off/a")
	offline(t, e, "off-b", "off/b")
	require.Eventually(t, func() bool { return stats(e).Connected == 0 }, waitLong, time.Millisecond)
	pub, _ := dial5(t, e, pahoConnect("pub"))
	const n = 30
	for i := range n {
		pub.pub(t, "off/a", 1, false, string(rune('A'+i%26))+string(make([]byte, 64<<10)))
		pub.pub(t, "off/b", 1, false, string(make([]byte, 64<<10)))
	}
	require.Eventually(t, func() bool {
		st := stats(e)
		return int64(st.Queued)+st.DroppedBy[mqtt.DropOfflineBytes] == 2*n
	}, waitLong, 5*time.Millisecond, "%+v", stats(e))
	st := stats(e)
	t.Logf("%d × 64 KiB to each of two offline sessions: %d queued, %d bytes held offline (bound %d), %d dropped", n, st.Queued, st.OfflineBytes, bound, st.DroppedBy[mqtt.DropOfflineBytes])
	require.LessOrEqual(t, st.OfflineBytes, int64(bound))
	require.Equal(t, st.QueuedBytes, st.OfflineBytes)
	kept := st.Queued

	sei := uint32(600)
	a, ack := dial5(t, e, &paho.Connect{ClientID: "off-a", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	require.True(t, ack.SessionPresent)
	var got []byte
	for range kept / 2 {
		m := a.next(t)
		if m.Topic == "off/a" {
			got = append(got, m.Payload[0])
		}
	}
	require.Equal(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:len(got)], string(got), "the oldest kept, in order")
	require.Eventually(t, func() bool {
		st := stats(e)
		return st.QueuedBytes == st.OfflineBytes && st.Inflight == 0 // a's all acknowledged by paho
	}, waitLong, 5*time.Millisecond, "%+v", stats(e))
	b, _ := dial5(t, e, &paho.Connect{ClientID: "off-b", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	_ = b
	require.Eventually(t, func() bool {
		st := stats(e)
		return st.QueuedBytes == 0 && st.OfflineBytes == 0
	}, waitLong, 5*time.Millisecond, "accounting back to zero: %+v", stats(e))
}

// TestQueuedMessagesBounded: max_queued_messages bounds a session's
// queue; past it the new messages are dropped, so the client gets the
// oldest, in order.
func TestQueuedMessagesBounded(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{MaxQueuedMessages: 10})
	offline(t, e, "count", "cnt/#")
	require.Eventually(t, func() bool { return stats(e).Connected == 0 }, waitLong, time.Millisecond)
	pub, _ := dial5(t, e, pahoConnect("pub"))
	for i := range 25 {
		pub.pub(t, "cnt/x", 1, false, string(rune('a'+i)))
	}
	require.Eventually(t, func() bool { return stats(e).DroppedBy[mqtt.DropQueueMessages] == 15 }, waitLong, time.Millisecond, "%+v", stats(e))
	require.Equal(t, 10, stats(e).Queued)
	sei := uint32(600)
	cl, _ := dial5(t, e, &paho.Connect{ClientID: "count", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	var got string
	for range 10 {
		got += string(cl.next(t).Payload)
	}
	require.Equal(t, "abcdefghij", got)
	cl.none(t)
}

// TestTopicAliasBounded: the 5.0 CONNACK announces a modest Topic Alias
// Maximum (16 by default, configurable, none at all), an alias above it
// is 0x94, and what aliases hold is counted against the connection:
// past MaxAliasBytes it ends with 0x97 (issue 16, finding 4: 3,000
// aliases of 65 KB topics held 405 MB).
func TestTopicAliasBounded(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	connect := func(t *testing.T, e *env) (*raw, packet.Properties) {
		r := dialRaw(t, e)
		r.send(connect5...)
		h, body := r.read()
		require.Equal(t, byte(0x20), h)
		var d packet.Decoder
		ack, err := d.DecodeConnack(append([]byte{h, byte(len(body))}, body...), packet.V5)
		require.NoError(t, err)
		return r, ack.Props
	}
	alias := func(r *raw, a uint16, topic []byte) {
		pp := &packet.PublishPacket{Topic: topic, Payload: []byte("x")}
		pp.Props.SetTopicAlias(a)
		r.send(packet.AppendPublish(nil, packet.V5, pp)...)
	}
	disconnect := func(t *testing.T, r *raw, want packet.Code) {
		h, body := r.read()
		require.Equal(t, byte(0xE0), h, "DISCONNECT")
		require.Equal(t, byte(want), body[0])
		r.closed()
	}

	r, props := connect(t, e)
	amax, ok := props.TopicAliasMaximum()
	require.True(t, ok)
	require.Equal(t, uint16(mqtt.DefaultMaxTopicAlias), amax)
	alias(r, 17, []byte("a"))
	disconnect(t, r, packet.TopicAliasInvalid)

	r, _ = connect(t, e)
	topic := bytes.Repeat([]byte("t"), 5000)
	var peak int64
	for a := uint16(1); a <= 16; a++ {
		topic[0] = byte('a' + a)
		alias(r, a, topic)
		if int(a)*(5000+48) > mqtt.MaxAliasBytes {
			break
		}
		// PINGREQ/PINGRESP: the alias is set once the answer comes.
		r.send(0xC0, 0)
		h, _ := r.read()
		require.Equal(t, byte(0xD0), h)
		peak = max(peak, stats(e).AliasBytes)
	}
	disconnect(t, r, packet.QuotaExceeded)
	t.Logf("aliases of 5,000-byte topics: %d bytes accounted at the last one accepted (limit %d)", peak, mqtt.MaxAliasBytes)
	require.LessOrEqual(t, peak, int64(mqtt.MaxAliasBytes))
	require.Positive(t, peak)
	require.Eventually(t, func() bool { return stats(e).AliasBytes == 0 }, waitLong, time.Millisecond)

	off := start(t, broker.Options{}, mqtt.Options{MaxTopicAlias: -1})
	r, props = connect(t, off)
	_, ok = props.TopicAliasMaximum()
	require.False(t, ok, "no aliases: no Topic Alias Maximum (0)")
	alias(r, 1, []byte("a"))
	disconnect(t, r, packet.TopicAliasInvalid)
}

// TestMQTTMaxConnections: mqtt { max_connections } bounds the MQTT
// connections: past it CONNECT gets 0x97 (3.1.1: 0x03), and a slot frees
// when a connection ends (issue 16, finding 10).
func TestMQTTMaxConnections(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{MaxConnections: 1})
	first, _ := dial5(t, e, pahoConnect("first"))
	for _, tc := range []struct {
		name    string
		connect []byte
		want    byte
	}{{"5.0", connect5, byte(packet.QuotaExceeded)}, {"3.1.1", connect311, 0x03}} {
		r := dialRaw(t, e)
		r.send(tc.connect...)
		present, code := r.connack()
		require.False(t, present)
		require.Equal(t, tc.want, code, tc.name)
		r.closed()
	}
	require.NoError(t, first.c.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool {
		r := dialRaw(t, e)
		r.send(connect311...)
		_, code := r.connack()
		r.c.Close()
		return code == 0
	}, waitLong, 10*time.Millisecond, "accepted once the first left")
}
