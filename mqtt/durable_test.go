package mqtt_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/store/filestore"
)

// gatedStore is a store.Grouped whose commits the test holds back: while
// held, Durable callbacks wait (and Sync with them) until release.
type gatedStore struct {
	*store.Memory
	mu      sync.Mutex
	held    bool
	waiting []func(error)
}

var _ store.Grouped = (*gatedStore)(nil)

func (g *gatedStore) Durable(fn func(error)) {
	g.mu.Lock()
	if g.held {
		g.waiting = append(g.waiting, fn)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	fn(nil)
}

func (g *gatedStore) Sync(ctx context.Context) error {
	ch := make(chan error, 1)
	g.Durable(func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedStore) Begin() {}
func (g *gatedStore) End()   {}

func (g *gatedStore) hold() {
	g.mu.Lock()
	g.held = true
	g.mu.Unlock()
}

func (g *gatedStore) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

func (g *gatedStore) release() {
	g.mu.Lock()
	fns := g.waiting
	g.held, g.waiting = false, nil
	g.mu.Unlock()
	for _, fn := range fns {
		fn(nil)
	}
}

// nothing checks that no packet arrives while the store holds its
// commits (a short window: an absence cannot be waited for).
func (r *raw) nothing() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	_, err := r.br.Peek(1)
	var ne net.Error
	require.True(r.t, errors.As(err, &ne) && ne.Timeout(), "a packet arrived before the store committed: %v", err)
}

// TestAcksAfterDurable: for a persistent session, CONNACK, SUBACK and
// UNSUBACK leave only once what they acknowledge is durable, as PUBACK
// already did (issue 16, finding 7: a SIGKILL right after CONNACK lost the
// session); a clean session's are not held.
func TestAcksAfterDurable(t *testing.T) {
	g := &gatedStore{Memory: store.NewMemory()}
	e := start(t, broker.Options{Store: g}, mqtt.Options{})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("version ", v), func(t *testing.T) {
			cp := &packet.ConnectPacket{Version: v, ClientID: []byte(fmt.Sprint("durable-", v)), KeepAlive: 60}
			if v == packet.V5 {
				cp.Props.SetSessionExpiryInterval(600)
			}
			r := dialRaw(t, e)
			g.hold()
			r.send(packet.AppendConnect(nil, cp)...)
			require.Eventually(t, func() bool { return g.pending() == 1 }, waitLong, time.Millisecond, "CONNACK waits for the store")
			r.nothing()
			g.release()
			_, code := r.connack()
			require.Zero(t, code)

			g.hold()
			r.send(packet.AppendSubscribe(nil, v, &packet.SubscribePacket{PacketID: 7, Subs: []packet.Subscription{{Filter: []byte("d/#"), QoS: 1}}})...)
			require.Eventually(t, func() bool { return g.pending() == 1 }, waitLong, time.Millisecond, "SUBACK waits for the store")
			r.nothing()
			g.release()
			h, body := r.read()
			require.Equal(t, byte(0x90), h, "SUBACK")
			require.Equal(t, []byte{0, 7}, body[:2])

			g.hold()
			r.send(packet.AppendUnsubscribe(nil, v, &packet.UnsubscribePacket{PacketID: 8, Filters: [][]byte{[]byte("d/#")}})...)
			require.Eventually(t, func() bool { return g.pending() == 1 }, waitLong, time.Millisecond, "UNSUBACK waits for the store")
			r.nothing()
			g.release()
			h, body = r.read()
			require.Equal(t, byte(0xB0), h, "UNSUBACK")
			require.Equal(t, []byte{0, 8}, body[:2])
		})
	}
	t.Run("clean session", func(t *testing.T) {
		g.hold()
		defer g.release()
		r := dialRaw(t, e)
		r.send(connect311...) // clean session: nothing of it is stored
		_, code := r.connack()
		require.Zero(t, code)
		r.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("c")}}})...)
		h, _ := r.read()
		require.Equal(t, byte(0x90), h)
		require.Zero(t, g.pending())
	})
}

// TestPropertiesSurviveRestart: MQTT 5.0 properties of stored messages
// (queued, in flight, retained, a will) come back after a restart on the
// durable store, and message expiry counts down across it: one that
// expired meanwhile is dropped (issue 16, finding 8: they came back bare).
func TestPropertiesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	fs, err := filestore.Open(dir, filestore.Options{})
	require.NoError(t, err)
	e := start(t, broker.Options{Store: fs}, mqtt.Options{})
	sei := uint32(600)
	persistent := func(id string) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}}
	}
	keep, _ := dial5(t, e, persistent("keep"))
	keep.sub(t, "p/#", 1)
	require.NoError(t, keep.c.Disconnect(&paho.Disconnect{}))

	// "fly" receives and never acknowledges: its message stays in flight.
	fly := dialRaw(t, e)
	flyConnect := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("fly"), KeepAlive: 60}
	flyConnect.Props.SetSessionExpiryInterval(600)
	fly.send(packet.AppendConnect(nil, flyConnect)...)
	fly.connack()
	fly.send(packet.AppendSubscribe(nil, packet.V5, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("p/a"), QoS: 1}}})...)
	h, _ := fly.read()
	require.Equal(t, byte(0x90), h)

	thirty, two, sixty := uint32(30), uint32(2), uint32(60)
	props := func(exp *uint32) *paho.PublishProperties {
		pf := byte(1)
		return &paho.PublishProperties{PayloadFormat: &pf, ContentType: "text/plain", ResponseTopic: "p/reply",
			CorrelationData: []byte{1, 2, 3}, User: paho.UserProperties{{Key: "k", Value: "v"}}, MessageExpiry: exp}
	}
	pub, _ := dial5(t, e, pahoConnect("pub"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for _, p := range []*paho.Publish{
		{Topic: "p/a", QoS: 1, Payload: []byte("queued"), Properties: props(&thirty)},
		{Topic: "p/short", QoS: 1, Payload: []byte("expires"), Properties: props(&two)},
		{Topic: "p/ret", QoS: 1, Retain: true, Payload: []byte("retained"), Properties: props(&sixty)},
	} {
		_, err := pub.c.Publish(ctx, p)
		require.NoError(t, err)
	}
	h, _ = fly.read()
	require.Equal(t, byte(0x32), h, "in flight to fly")

	// A will with properties, sent when its connection drops: it reaches
	// keep's queue with them. (Raw CONNECTs: paho.golang leaves a will's
	// content type and user properties out.)
	willConnect := func(id, topic, ct string, persistent bool, expiry, delay uint32) *raw {
		cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: !persistent, KeepAlive: 60,
			WillFlag: true, WillQoS: 1, WillTopic: []byte(topic), WillPayload: []byte("gone")}
		if persistent {
			cp.Props.SetSessionExpiryInterval(600)
		}
		cp.WillProps.SetContentType([]byte(ct))
		cp.WillProps.User = []packet.UserProperty{{Key: []byte("w"), Value: []byte("x")}}
		if expiry > 0 {
			cp.WillProps.SetMessageExpiry(expiry)
		}
		if delay > 0 {
			cp.WillProps.SetWillDelayInterval(delay)
		}
		r := dialRaw(t, e)
		r.send(packet.AppendConnect(nil, cp)...)
		_, code := r.connack()
		require.Zero(t, code)
		return r
	}
	willConnect("w", "p/will", "will/type", false, 40, 0).c.Close()
	require.Eventually(t, func() bool { return mqtt.SessionStats(e.b).Queued == 4 }, waitLong, 5*time.Millisecond, "%+v", mqtt.SessionStats(e.b))

	// And a will kept with a session that is still connected.
	willConnect("held", "p/held", "held/type", true, 0, 60)

	require.NoError(t, e.b.Shutdown(ctx))
	require.NoError(t, fs.Close())
	time.Sleep(2100 * time.Millisecond) // p/short's expiry passes while the broker is down

	fs, err = filestore.Open(dir, filestore.Options{})
	require.NoError(t, err)
	defer fs.Close()
	var heldWill *store.Message
	require.NoError(t, fs.Load(ctx, func(r store.Record) error {
		if r.Kind == store.KindSession && r.ClientID == "held" {
			heldWill = r.Session.Will
		}
		return nil
	}))
	require.NotNil(t, heldWill)
	wp, err := packet.DecodeMessageProps(heldWill.Props)
	require.NoError(t, err)
	ct, _ := wp.ContentType()
	require.Equal(t, "held/type", string(ct), "a stored will keeps its properties")

	e2 := start(t, broker.Options{Store: fs}, mqtt.Options{})
	check := func(p *paho.Publish, maxExpiry uint32) {
		t.Helper()
		require.NotNil(t, p.Properties)
		require.Equal(t, "text/plain", p.Properties.ContentType)
		require.Equal(t, "p/reply", p.Properties.ResponseTopic)
		require.Equal(t, []byte{1, 2, 3}, p.Properties.CorrelationData)
		require.Equal(t, "v", p.Properties.User.Get("k"))
		require.NotNil(t, p.Properties.PayloadFormat)
		require.Equal(t, byte(1), *p.Properties.PayloadFormat)
		require.NotNil(t, p.Properties.MessageExpiry)
		require.LessOrEqual(t, *p.Properties.MessageExpiry, maxExpiry, "counted down across the restart")
	}
	keep2, ack := dial5(t, e2, persistent("keep"))
	require.True(t, ack.SessionPresent)
	got := map[string]*paho.Publish{}
	for range 3 { // p/a, p/ret (live, when it was published) and p/will
		m := keep2.next(t)
		got[m.Topic] = m
	}
	keep2.none(t)
	require.NotContains(t, got, "p/short", "expired while the broker was down")
	check(got["p/a"], 28)
	check(got["p/ret"], 58)
	w := got["p/will"]
	require.NotNil(t, w, "the will: %v", got)
	require.Equal(t, "will/type", w.Properties.ContentType)
	require.Equal(t, "x", w.Properties.User.Get("w"))
	require.NotNil(t, w.Properties.MessageExpiry)
	require.LessOrEqual(t, *w.Properties.MessageExpiry, uint32(38))
	require.Positive(t, mqtt.SessionStats(e2.b).DroppedBy[mqtt.DropExpired])

	ret, _ := dial5(t, e2, pahoConnect("ret"))
	ret.sub(t, "p/ret", 1)
	m := ret.next(t)
	require.True(t, m.Retain)
	check(m, 58)

	fly2 := dialRaw(t, e2)
	fly2.send(packet.AppendConnect(nil, flyConnect)...)
	present, _ := fly2.connack()
	require.True(t, present)
	h, body := fly2.read()
	require.Equal(t, byte(0x3A), h, "re-sent with DUP")
	var d packet.Decoder
	fp, err := d.DecodePublish(append([]byte{h, byte(len(body))}, body...), packet.V5)
	require.NoError(t, err)
	ct, _ = fp.Props.ContentType()
	require.Equal(t, "text/plain", string(ct))
	rt, _ := fp.Props.ResponseTopic()
	require.Equal(t, "p/reply", string(rt))
	require.Len(t, fp.Props.User, 1)
	exp, ok := fp.Props.MessageExpiry()
	require.True(t, ok)
	require.LessOrEqual(t, exp, uint32(28))
	t.Logf("after the restart: queued p/a expiry %d, will expiry %d, in-flight expiry %d", *got["p/a"].Properties.MessageExpiry, *w.Properties.MessageExpiry, exp)
}

// TestSubscribeCostFlat: with the durable store, each SUBSCRIBE of a
// persistent session writes one record, whatever the session holds
// (issue 16, finding 6: 6,000 subscriptions took 10 s and wrote ~2 GB,
// the whole session each time); they all come back after a restart.
func TestSubscribeCostFlat(t *testing.T) {
	dir := t.TempDir()
	fs, err := filestore.Open(dir, filestore.Options{})
	require.NoError(t, err)
	e := start(t, broker.Options{Store: fs}, mqtt.Options{})
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("many"), KeepAlive: 60}
	cp.Props.SetSessionExpiryInterval(600)
	r := dialRaw(t, e)
	r.send(packet.AppendConnect(nil, cp)...)
	r.connack()
	const n = 6000
	long := strings.Repeat("f", 1000)
	filter := func(i int) []byte { return fmt.Appendf(nil, "%s/%05d", long, i) }
	before := fs.Stats()
	began := time.Now()
	var batch []byte
	for i := range n {
		// QoS 0: max_ack_pending bounds a session's QoS 1/2 subscriptions.
		batch = packet.AppendSubscribe(batch, packet.V5, &packet.SubscribePacket{PacketID: uint16(i + 1), Subs: []packet.Subscription{{Filter: filter(i)}}})
		if len(batch) > 256<<10 || i == n-1 {
			r.send(batch...)
			batch = batch[:0]
		}
	}
	for range n {
		h, body := r.read()
		require.Equal(t, byte(0x90), h)
		require.Equal(t, byte(0), body[len(body)-1], "granted")
	}
	took := time.Since(began)
	after := fs.Stats()
	written := after.Bytes - before.Bytes
	t.Logf("%d SUBSCRIBEs of 1 KB filters: %s, %d bytes written to the log (%d per subscription), %d records, %d compactions",
		n, took, written, written/n, after.Records-before.Records, after.Compacted)
	require.Less(t, written, int64(n*1200), "one record of about the filter's size per SUBSCRIBE")
	require.Zero(t, after.Compacted)

	require.NoError(t, e.b.Shutdown(context.Background()))
	require.NoError(t, fs.Close())
	fs, err = filestore.Open(dir, filestore.Options{})
	require.NoError(t, err)
	defer fs.Close()
	e2 := start(t, broker.Options{Store: fs}, mqtt.Options{})
	r2 := dialRaw(t, e2)
	cp.CleanStart = false
	r2.send(packet.AppendConnect(nil, cp)...)
	present, _ := r2.connack()
	require.True(t, present)
	pub, _ := dial5(t, e2, pahoConnect("pub"))
	pub.pub(t, string(filter(n-1)), 1, false, "last")
	h, body := r2.read()
	require.Equal(t, byte(0x30), h, "the 6000th subscription came back")
	require.True(t, strings.HasSuffix(string(body), "last"))
}
