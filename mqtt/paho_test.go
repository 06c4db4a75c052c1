package mqtt_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/store"
)

// env is a broker with an MQTT listener and a NATS listener.
type env struct {
	b    *broker.Broker
	mqtt *mqtt.Transport
	nats *natsproto.Transport
}

func start(t testing.TB, bo broker.Options, mo mqtt.Options) *env {
	t.Helper()
	b, err := broker.New(bo)
	require.NoError(t, err)
	mt, err := mqtt.New(mo)
	require.NoError(t, err)
	require.NoError(t, mt.Listen())
	nt, err := natsproto.New(natsproto.Options{})
	require.NoError(t, err)
	require.NoError(t, nt.Listen())
	require.NoError(t, b.Start(mt, nt))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &env{b: b, mqtt: mt, nats: nt}
}

// v5 is a paho.golang (MQTT 5.0) client collecting what it receives.
type v5 struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

func dial5(t testing.TB, e *env, cp *paho.Connect) (*v5, *paho.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	cl := &v5{msgs: make(chan *paho.Publish, 1000)}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			cl.msgs <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := cl.c.Connect(ctx, cp)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	return cl, ack
}

func (cl *v5) sub(t testing.TB, topic string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}})
	require.NoError(t, err)
	require.Equal(t, []byte{qos}, sa.Reasons)
}

func (cl *v5) pub(t testing.TB, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	require.NoError(t, err)
}

func (cl *v5) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-cl.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no PUBLISH within 5s")
		return nil
	}
}

func (cl *v5) none(t testing.TB) {
	t.Helper()
	select {
	case m := <-cl.msgs:
		t.Fatalf("unexpected PUBLISH on %q: %q", m.Topic, m.Payload)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestPahoV5PubSubAllQoS(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sub, ack := dial5(t, e, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30})
	require.False(t, ack.SessionPresent)
	pub, _ := dial5(t, e, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	sub.sub(t, "sensors/+/temp", 2)
	for qos := byte(0); qos <= 2; qos++ {
		pub.pub(t, "sensors/k1/temp", qos, false, "21.5")
		m := sub.next(t)
		require.Equal(t, "sensors/k1/temp", m.Topic)
		require.Equal(t, "21.5", string(m.Payload))
		require.Equal(t, qos, m.QoS, "delivered QoS = min(publish, granted)")
	}
}

// TestCrossProtocol: MQTT → NATS and NATS → MQTT with the topic/subject
// mapping, and a NATS message reaching a QoS 1 subscription at QoS 1.
func TestCrossProtocol(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	nc, err := nats.Connect("nats://" + e.nats.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	ns, err := nc.SubscribeSync("home.*.light")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	m, _ := dial5(t, e, &paho.Connect{ClientID: "m", CleanStart: true})
	m.sub(t, "cmd/#", 1)
	m.pub(t, "home/kitchen/light", 1, false, "on")
	got, err := ns.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "home.kitchen.light", got.Subject)
	require.Equal(t, "on", string(got.Data))

	require.NoError(t, nc.Publish("cmd.door", []byte("open")))
	require.NoError(t, nc.Publish("cmd", []byte("root")))
	p := m.next(t)
	require.Equal(t, "cmd/door", p.Topic)
	require.Equal(t, byte(1), p.QoS, "busbar: NATS → MQTT QoS 1 subscription at QoS 1")
	p = m.next(t)
	require.Equal(t, "cmd", p.Topic, "a/# also matches a")
}

// TestRetained covers [MQTT-3.3.1-5/-8/-9/-10/-11] (checklist rows 21, 22).
func TestRetained(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	pub, _ := dial5(t, e, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.pub(t, "r/a", 1, true, "first")
	pub.pub(t, "r/a", 1, true, "second") // replaces [MQTT-3.3.1-5]
	require.Eventually(t, func() bool { return mqtt.Retained(e.b) == 1 }, time.Second, 5*time.Millisecond)

	sub, _ := dial5(t, e, &paho.Connect{ClientID: "sub", CleanStart: true})
	sub.sub(t, "r/#", 1)
	m := sub.next(t)
	require.Equal(t, "second", string(m.Payload))
	require.True(t, m.Retain, "replay to a new subscription has RETAIN=1 [MQTT-3.3.1-8]")
	pub.pub(t, "r/a", 0, true, "live")
	m = sub.next(t)
	require.False(t, m.Retain, "live traffic has RETAIN=0 [MQTT-3.3.1-9]")
	pub.pub(t, "r/a", 0, true, "") // delete [MQTT-3.3.1-10]
	m = sub.next(t)
	require.Empty(t, m.Payload, "the zero-byte retained message is still delivered live [MQTT-3.3.1-11]")
	require.Eventually(t, func() bool { return mqtt.Retained(e.b) == 0 }, time.Second, 5*time.Millisecond)
}

// TestPersistentSessionQueuesWhileOffline: QoS 1 messages published while
// a persistent session is offline arrive on resume, in order.
func TestPersistentSessionQueuesWhileOffline(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	expiry := uint32(300)
	sub, _ := dial5(t, e, &paho.Connect{ClientID: "p1", CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	sub.sub(t, "q/#", 1)
	require.NoError(t, sub.c.Disconnect(&paho.Disconnect{}))

	pub, _ := dial5(t, e, &paho.Connect{ClientID: "pub", CleanStart: true})
	for _, p := range []string{"1", "2", "3"} {
		pub.pub(t, "q/x", 1, false, p)
	}
	again, ack := dial5(t, e, &paho.Connect{ClientID: "p1", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	require.True(t, ack.SessionPresent, "[MQTT-3.2.2-2]")
	for _, p := range []string{"1", "2", "3"} {
		require.Equal(t, p, string(again.next(t).Payload))
	}
}

// TestWill covers checklist row 26: will on abnormal close, none after a
// normal DISCONNECT.
func TestWill(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	watcher, _ := dial5(t, e, &paho.Connect{ClientID: "w", CleanStart: true})
	watcher.sub(t, "wills/#", 1)

	// Normal DISCONNECT: no will [MQTT-3.1.2-10].
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	_, err = c.Connect(context.Background(), &paho.Connect{ClientID: "dies", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "wills/dies", Payload: []byte("gone"), QoS: 1}})
	require.NoError(t, err)
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	watcher.none(t)

	// Abnormal close: the will is published [MQTT-3.1.2-8].
	raw, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	c2 := paho.NewClient(paho.ClientConfig{Conn: raw})
	_, err = c2.Connect(context.Background(), &paho.Connect{ClientID: "crash", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "wills/crash", Payload: []byte("lost"), QoS: 1}})
	require.NoError(t, err)
	raw.Close()
	m := watcher.next(t)
	require.Equal(t, "wills/crash", m.Topic)
	require.Equal(t, "lost", string(m.Payload))
}

// TestTakeover covers checklist row 7: a second connection with the same
// client id closes the first ([MQTT-3.1.4-3], DISCONNECT 0x8E in 5.0).
func TestTakeover(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	var mu sync.Mutex
	var reason byte
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	first := paho.NewClient(paho.ClientConfig{Conn: nc, OnServerDisconnect: func(d *paho.Disconnect) {
		mu.Lock()
		reason = d.ReasonCode
		mu.Unlock()
	}})
	_, err = first.Connect(context.Background(), &paho.Connect{ClientID: "same", CleanStart: true})
	require.NoError(t, err)
	dial5(t, e, &paho.Connect{ClientID: "same", CleanStart: true})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return reason == 0x8E }, 20*time.Second, 5*time.Millisecond) // a busy CI machine
}

// TestSharedSubscription: $share/group/filter gives each message to one
// member ([MQTT-4.8.2-1]).
func TestSharedSubscription(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	a, _ := dial5(t, e, &paho.Connect{ClientID: "a", CleanStart: true})
	b, _ := dial5(t, e, &paho.Connect{ClientID: "b", CleanStart: true})
	a.sub(t, "$share/g/jobs/#", 0)
	b.sub(t, "$share/g/jobs/#", 0)
	pub, _ := dial5(t, e, &paho.Connect{ClientID: "p", CleanStart: true})
	const n = 40
	for range n {
		pub.pub(t, "jobs/x", 0, false, "j")
	}
	got := 0
	deadline := time.After(5 * time.Second)
	for got < n {
		select {
		case <-a.msgs:
		case <-b.msgs:
		case <-deadline:
			t.Fatalf("got %d of %d", got, n)
		}
		got++
	}
	a.none(t)
	b.none(t)
}

func pahoConnect(id string) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
}

// Row 30: a queued message whose Message Expiry Interval passed is not
// delivered [MQTT-3.3.2-5]; one still valid is forwarded with the time
// left [MQTT-3.3.2-6].
func TestMQTT_3_3_2_5_MessageExpiry(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sei := uint32(300)
	sub, _ := dial5(t, e, &paho.Connect{ClientID: "x", CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	sub.sub(t, "exp/#", 1)
	require.NoError(t, sub.c.Disconnect(&paho.Disconnect{}))
	pub, _ := dial5(t, e, pahoConnect("p"))
	one, long := uint32(1), uint32(100)
	ctx := context.Background()
	_, err := pub.c.Publish(ctx, &paho.Publish{Topic: "exp/short", QoS: 1, Payload: []byte("gone"), Properties: &paho.PublishProperties{MessageExpiry: &one}})
	require.NoError(t, err)
	_, err = pub.c.Publish(ctx, &paho.Publish{Topic: "exp/long", QoS: 1, Payload: []byte("kept"), Properties: &paho.PublishProperties{MessageExpiry: &long}})
	require.NoError(t, err)
	time.Sleep(2100 * time.Millisecond)
	again, _ := dial5(t, e, &paho.Connect{ClientID: "x", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	m := again.next(t)
	require.Equal(t, "kept", string(m.Payload))
	require.NotNil(t, m.Properties.MessageExpiry)
	require.Less(t, *m.Properties.MessageExpiry, long, "forwarded with the time left")
	again.none(t)
}

// Row 26 (5.0): the will is delayed by the Will Delay Interval and
// cancelled by a reconnect within it [MQTT-3.1.3-9].
func TestMQTT_3_1_3_9_WillDelay(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	watcher, _ := dial5(t, e, pahoConnect("w"))
	watcher.sub(t, "wd/#", 0)
	sei := uint32(60)
	connect := func(payload string, delay uint32) net.Conn {
		nc, err := net.Dial("tcp", e.mqtt.Addr().String())
		require.NoError(t, err)
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		_, err = c.Connect(context.Background(), &paho.Connect{ClientID: "wd", CleanStart: false,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &sei},
			WillMessage:    &paho.WillMessage{Topic: "wd/x", Payload: []byte(payload)},
			WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
		require.NoError(t, err)
		return nc
	}
	// A will delayed 4 s; the client is back well within it (a loaded
	// machine may take a while to reconnect): that will is never sent.
	nc := connect("first", 4)
	nc.Close()
	firstGone := time.Now()
	nc = connect("late", 1)
	nc.Close()
	start := time.Now()
	m := watcher.next(t)
	require.Equal(t, "late", string(m.Payload), "the will of the resumed connection, not the cancelled one")
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "sent after the delay")
	// Past the first will's delay: it still does not come.
	time.Sleep(time.Until(firstGone.Add(4500 * time.Millisecond)))
	watcher.none(t)
}

// Item 9: max_keep_alive: a client asking for none is told the server
// keep alive [MQTT-3.2.2-21] and held to it.
func TestMQTTMaxKeepAlive(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{MaxKeepAlive: 5})
	_, ack := dial5(t, e, &paho.Connect{ClientID: "ka", CleanStart: true, KeepAlive: 0})
	require.NotNil(t, ack.Properties.ServerKeepAlive)
	require.Equal(t, uint16(5), *ack.Properties.ServerKeepAlive)
}

// An MQTT client is one connection for max_connections and monitoring,
// however long its session lives.
func TestMQTTCountsOneConnection(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	dial5(t, e, pahoConnect("one"))
	dial5(t, e, pahoConnect("two"))
	require.Equal(t, 2, e.b.NumConnections())
}

func subOpts(t *testing.T, cl *v5, props *paho.SubscribeProperties, opts ...paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.c.Subscribe(ctx, &paho.Subscribe{Properties: props, Subscriptions: opts})
	require.NoError(t, err)
}

// 5.0 No Local [MQTT-3.8.3-3]: a client's own messages are not sent back
// on a no-local subscription.
func TestMQTT_3_8_3_3_NoLocal(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	cl, _ := dial5(t, e, pahoConnect("nl"))
	subOpts(t, cl, nil, paho.SubscribeOptions{Topic: "nl/a", QoS: 1, NoLocal: true}, paho.SubscribeOptions{Topic: "nl/b", QoS: 1})
	cl.pub(t, "nl/a", 1, false, "mine")
	cl.pub(t, "nl/b", 1, false, "echo")
	require.Equal(t, "echo", string(cl.next(t).Payload))
	cl.none(t)
}

// 5.0 Subscription Identifier is returned with matching messages
// [MQTT-3.3.4-3].
func TestMQTT_3_3_4_3_SubscriptionIdentifier(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	cl, _ := dial5(t, e, pahoConnect("sid"))
	id := 42
	subOpts(t, cl, &paho.SubscribeProperties{SubscriptionIdentifier: &id}, paho.SubscribeOptions{Topic: "sid/#", QoS: 0})
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "sid/x", 0, false, "x")
	m := cl.next(t)
	require.NotNil(t, m.Properties.SubscriptionIdentifier)
	require.Equal(t, 42, *m.Properties.SubscriptionIdentifier)
}

// 5.0 request/response and user properties are forwarded unchanged
// [MQTT-3.3.2-15..-20].
func TestMQTT_3_3_2_ForwardedProperties(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	cl, _ := dial5(t, e, pahoConnect("s"))
	cl.sub(t, "rr/req", 1)
	pub, _ := dial5(t, e, pahoConnect("p"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pub.c.Publish(ctx, &paho.Publish{Topic: "rr/req", QoS: 1, Payload: []byte("q"), Properties: &paho.PublishProperties{
		ResponseTopic: "rr/resp", CorrelationData: []byte{1, 2, 3}, ContentType: "text/plain",
		User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	require.NoError(t, err)
	m := cl.next(t)
	require.Equal(t, "rr/resp", m.Properties.ResponseTopic)
	require.Equal(t, []byte{1, 2, 3}, m.Properties.CorrelationData)
	require.Equal(t, "text/plain", m.Properties.ContentType)
	require.Equal(t, "v", m.Properties.User.Get("k"))
}

// 5.0 Retain Handling 2 sends no retained messages; Retain As Published
// keeps RETAIN=1 on live traffic [MQTT-3.3.1-10..-13] (checklist row 22).
func TestMQTT_3_3_1_RetainHandlingAndRAP(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "rh/x", 1, true, "old") // QoS 1: stored before the subscription (a QoS 0 one could arrive after it, live)
	cl, _ := dial5(t, e, pahoConnect("s"))
	subOpts(t, cl, nil, paho.SubscribeOptions{Topic: "rh/#", QoS: 0, RetainHandling: 2, RetainAsPublished: true})
	cl.none(t)
	pub.pub(t, "rh/x", 0, true, "new")
	m := cl.next(t)
	require.Equal(t, "new", string(m.Payload))
	require.True(t, m.Retain, "retain as published")
}

// Row 24: UNSUBACK is sent even when nothing matched [MQTT-3.10.4-5].
func TestMQTT_3_10_4_5_UnsubackAlways(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	cl, _ := dial5(t, e, pahoConnect("u"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ua, err := cl.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"never/subscribed"}})
	require.NoError(t, err)
	require.Equal(t, []byte{0x11}, ua.Reasons, "No subscription existed")
}

// Back-pressure is visible: QoS 1 messages for an offline persistent
// session wait in its queue (counted), QoS 0 ones are dropped (counted).
func TestMQTTSessionStats(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	sei := uint32(60)
	sub, _ := dial5(t, e, &paho.Connect{ClientID: "off", CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	sub.sub(t, "bp/#", 1)
	require.NoError(t, sub.c.Disconnect(&paho.Disconnect{}))
	// The DISCONNECT is handled asynchronously: wait until the session is offline.
	require.Eventually(t, func() bool { return mqtt.SessionStats(e.b).Connected == 0 }, 2*time.Second, 5*time.Millisecond)
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "bp/a", 1, false, "kept")
	pub.pub(t, "bp/b", 0, false, "dropped")
	require.Eventually(t, func() bool {
		st := mqtt.SessionStats(e.b)
		return st.Queued == 1 && st.Dropped == 1 && st.Sessions == 2 && st.Connected == 1
	}, 2*time.Second, 5*time.Millisecond, "%+v", mqtt.SessionStats(e.b))
}

// Retained messages live in the broker's Store: a second broker on the
// same Store (a restart, for a durable one) delivers them.
func TestRetainedInStore(t *testing.T) {
	st := store.NewMemory()
	e := start(t, broker.Options{Store: st}, mqtt.Options{})
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "kept/one", 1, true, "v1")
	require.Eventually(t, func() bool { return mqtt.Retained(e.b) == 1 }, time.Second, 5*time.Millisecond)

	e2 := start(t, broker.Options{Store: st}, mqtt.Options{})
	sub, _ := dial5(t, e2, pahoConnect("s"))
	sub.sub(t, "kept/#", 1)
	m := sub.next(t)
	require.Equal(t, "v1", string(m.Payload))
	require.True(t, m.Retain)
}

// A persistent session, its subscription and an unacknowledged QoS 1
// message are restored from the broker's Store by a new broker (a restart,
// with a durable Store): the client resumes with session present and
// gets the message again.
func TestSessionRestoredFromStore(t *testing.T) {
	st := store.NewMemory()
	e := start(t, broker.Options{Store: st}, mqtt.Options{})
	persistent := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 1, 'r'}
	r := dialRaw(t, e)
	r.send(persistent...)
	r.connack()
	r.send(0x82, 6, 0, 1, 0, 1, 'z', 1)
	r.read()
	pub, _ := dial5(t, e, pahoConnect("p"))
	pub.pub(t, "z", 1, false, "survives")
	h, body := r.read()
	require.Equal(t, byte(0x32), h)
	r.c.Close() // never acknowledged

	e2 := start(t, broker.Options{Store: st}, mqtt.Options{})
	r2 := dialRaw(t, e2)
	r2.send(persistent...)
	present, _ := r2.connack()
	require.True(t, present, "the session came back from the Store")
	h, body2 := r2.read()
	require.Equal(t, byte(0x3A), h, "re-sent with DUP")
	require.Equal(t, body[3:5], body2[3:5], "same packet id")
	require.Equal(t, "survives", string(body2[5:]))
	pub2, _ := dial5(t, e2, pahoConnect("p2"))
	pub2.pub(t, "z", 1, false, "live")
	h, body3 := r2.read()
	require.Equal(t, byte(0x32), h, "the restored subscription is live")
	require.Equal(t, "live", string(body3[5:]))
}

// Messages queued for an offline persistent session are kept in the
// Store too: a broker started on it delivers them in order.
func TestQueuedMessagesRestoredFromStore(t *testing.T) {
	st := store.NewMemory()
	e := start(t, broker.Options{Store: st}, mqtt.Options{})
	persistent := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 1, 'q'}
	r := dialRaw(t, e)
	r.send(persistent...)
	r.connack()
	r.send(0x82, 6, 0, 1, 0, 1, 'z', 1)
	r.read()
	r.send(0xE0, 0) // DISCONNECT: offline from here
	require.Eventually(t, func() bool { return mqtt.SessionStats(e.b).Connected == 0 }, 2*time.Second, 5*time.Millisecond)
	pub, _ := dial5(t, e, pahoConnect("p"))
	for _, p := range []string{"one", "two", "three"} {
		pub.pub(t, "z", 1, false, p)
	}
	require.Eventually(t, func() bool { return mqtt.SessionStats(e.b).Queued == 3 }, 2*time.Second, 5*time.Millisecond)

	e2 := start(t, broker.Options{Store: st}, mqtt.Options{})
	r2 := dialRaw(t, e2)
	r2.send(persistent...)
	present, _ := r2.connack()
	require.True(t, present)
	for _, want := range []string{"one", "two", "three"} {
		h, body := r2.read()
		require.Equal(t, byte(0x32), h, "sent for the first time: no DUP")
		require.Equal(t, want, string(body[5:]))
		r2.send(0x40, 2, body[3], body[4]) // PUBACK
	}
	require.Eventually(t, func() bool {
		n := 0
		_ = st.Load(context.Background(), func(r store.Record) error {
			if r.Kind == store.KindInflight {
				n++
			}
			return nil
		})
		return n == 0
	}, 2*time.Second, 5*time.Millisecond, "acknowledged messages leave the Store")
}
