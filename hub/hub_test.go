package hub_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/hub"
	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
)

// jsCluster starts a three-node nats-server 2.15.2 cluster with JetStream
// in domain "hub".
func jsCluster(t testing.TB) []*natsserver.Hub {
	t.Helper()
	bin := natsserver.Binary(t, "2.15.2")
	ports := []int{testpeer.FreePort(t), testpeer.FreePort(t), testpeer.FreePort(t)}
	hubs := make([]*natsserver.Hub, 3)
	for i := range hubs {
		var routes []int
		for j, p := range ports {
			if j != i {
				routes = append(routes, p)
			}
		}
		top := fmt.Sprintf("jetstream { store_dir: %q, domain: hub }\n", t.TempDir())
		hubs[i] = natsserver.Start(t, bin, natsserver.Config{Name: fmt.Sprintf("hub%d", i+1), ClusterName: "hubs",
			ClusterPort: ports[i], Routes: routes, Top: top})
	}
	for _, h := range hubs {
		h.WaitRoutes(t, 2)
	}
	return hubs
}

// instance is one busbar with NATS, MQTT, a leaf link to the hub and its
// MQTT state in the hub.
type instance struct {
	b          *broker.Broker
	st         *hub.Store
	leaf       *leafnode.Service
	nats, mqtt string
}

func startInstance(t testing.TB, name string, leafURLs []string, a auth.Authenticator) *instance {
	t.Helper()
	st := hub.New(hub.Options{Domain: "hub", Replicas: *replicas})
	b, err := broker.New(broker.Options{ServerName: name, Store: st, Authenticator: a, Logger: testLogger(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := natsproto.New(natsproto.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mt, err := mqtt.New(mqtt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []interface{ Listen() error }{nt, mt} {
		if err := l.Listen(); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := leafnode.New(leafnode.Options{Remotes: []leafnode.Remote{{URLs: leafURLs}}, Reconnect: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(nt, mt, leaf, st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	in := &instance{b: b, st: st, leaf: leaf, nats: "nats://" + nt.Addr().String(), mqtt: "tcp://" + mt.Addr().String()}
	waitFor(t, 30*time.Second, name+" hub state ready", func() error { return st.Ready() })
	return in
}

type tlog struct {
	t    testing.TB
	name string
}

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t, name}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mqttConnect(t *testing.T, url, id string, clean bool, onLost func(error)) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true)
	if onLost != nil {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { onLost(err) })
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s to %s: %v", id, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func wait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt: %v", tok.Error())
	}
}

func TestRetainedAcrossInstances(t *testing.T) {
	hubs := jsCluster(t)
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, nil)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)

	pa := mqttConnect(t, a.mqtt, "pub-a", true, nil)
	wait(t, pa.Publish("status/door", 1, true, "open"))

	got := make(chan string, 10)
	sb := mqttConnect(t, bb.mqtt, "sub-b", true, nil)
	waitFor(t, 10*time.Second, "retained seen on b", func() error {
		if mqtt.Retained(bb.b) == 1 {
			return nil
		}
		return fmt.Errorf("b holds %d retained", mqtt.Retained(bb.b))
	})
	wait(t, sb.Subscribe("status/#", 1, func(_ paho.Client, m paho.Message) {
		got <- fmt.Sprintf("%s=%s retain=%v", m.Topic(), m.Payload(), m.Retained())
	}))
	select {
	case g := <-got:
		if g != "status/door=open retain=true" {
			t.Fatalf("got %q", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retained message set on a not replayed on b")
	}
	// Cleared on b: gone on a.
	wait(t, sb.Publish("status/door", 1, true, ""))
	waitFor(t, 10*time.Second, "retained cleared on a", func() error {
		if n := mqtt.Retained(a.b); n != 0 {
			return fmt.Errorf("a still holds %d", n)
		}
		return nil
	})
}

func TestTakeoverAcrossInstances(t *testing.T) {
	hubs := jsCluster(t)
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, nil)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	lost := make(chan error, 1)
	mqttConnect(t, a.mqtt, "dev1", false, func(err error) { lost <- err })
	start := time.Now()
	mqttConnect(t, bb.mqtt, "dev1", false, nil)
	select {
	case <-lost:
		// The 1 s goal is measured by BenchmarkTakeover: no timing
		// assertion in a test that runs beside others.
		t.Logf("takeover in %v", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on a was not closed when b took the client id over")
	}
}

func TestOtherIdentityRefusedAcrossInstances(t *testing.T) {
	hubs := jsCluster(t)
	users := auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		if c.User != "" && c.Password == c.User+"-pw" {
			return &auth.Identity{Name: c.User}, true, nil
		}
		return nil, false, nil
	})
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, users)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, users)
	o := paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("shared-id").SetCleanSession(false).SetUsername("alice").SetPassword("alice-pw")
	ca := paho.NewClient(o)
	wait(t, ca.Connect())
	defer ca.Disconnect(0)
	o2 := paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("shared-id").SetCleanSession(false).SetUsername("mallory").SetPassword("mallory-pw").
		SetAutoReconnect(false).SetConnectRetry(false)
	cb := paho.NewClient(o2)
	tok := cb.Connect()
	tok.WaitTimeout(10 * time.Second)
	if tok.Error() == nil {
		t.Fatal("another identity took the client id over on another instance")
	}
	if !ca.IsConnectionOpen() {
		t.Fatal("the owner's connection was closed by a refused identity")
	}
}

func TestSessionResumesOnAnotherInstance(t *testing.T) {
	hubs := jsCluster(t)
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, nil)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	sub := mqttConnect(t, a.mqtt, "roamer", false, nil)
	wait(t, sub.Subscribe("orders/#", 1, func(paho.Client, paho.Message) {}))
	sub.Disconnect(100)
	waitFor(t, 10*time.Second, "session offline on a", func() error {
		if st := mqtt.SessionStats(a.b); st.Connected != 0 || st.Sessions != 1 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	pub := mqttConnect(t, a.mqtt, "pub", true, nil)
	const n = 20
	for i := range n {
		wait(t, pub.Publish("orders/new", 1, false, fmt.Sprint(i)))
	}
	got := make(chan string, n*2)
	o := paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("roamer").SetCleanSession(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	c := paho.NewClient(o)
	wait(t, c.Connect())
	defer c.Disconnect(0)
	for i := range n {
		select {
		case g := <-got:
			if g != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q", i, g)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d queued on a not delivered on b", i)
		}
	}
	// The subscription moved with the session: live messages arrive on b.
	wait(t, pub.Publish("orders/new", 1, false, "live"))
	select {
	case g := <-got:
		if g != "live" {
			t.Fatalf("got %q", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("live message after the move not delivered")
	}
	if st := mqtt.SessionStats(a.b); st.Sessions != 1 { // the publisher's own
		t.Fatalf("a still keeps the moved session: %+v", st)
	}
}

func TestNATSJetStreamThroughTheLink(t *testing.T) {
	hubs := jsCluster(t)
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, nil)
	nc, err := nats.Connect(a.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("get: %v %v", e, err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "events.one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream: %+v %v", info, err)
	}
	// A named pull consumer with a wildcard filter (its create request
	// carries the filter in the subject) fetches through the link.
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "worker", FilterSubject: "events.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if m.Subject() != "events.one" || string(m.Data()) != "1" {
			t.Fatalf("fetched %s %q", m.Subject(), m.Data())
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("fetched %d messages: %v", n, batch.Error())
	}
	// A key-value watcher (a push consumer: the hub sends its deliveries
	// on the consumer's inbox with the key's subject after the ack reply's
	// '@', which the link hands to the client as the subject).
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := kv.Put(ctx, "k2", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for len(seen) < 2 {
		select {
		case e := <-w.Updates():
			if e != nil {
				seen[e.Key()] = string(e.Value())
			}
		case <-ctx.Done():
			t.Fatalf("watch through the link saw %v", seen)
		}
	}
	if seen["k"] != "v" || seen["k2"] != "v2" {
		t.Fatalf("watch saw %v", seen)
	}
}

func TestHubUnavailableRefusesMQTT(t *testing.T) {
	// A leaf remote no hub listens on: the state never becomes ready.
	st := hub.New(hub.Options{Domain: "hub"})
	b, err := broker.New(broker.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := mqtt.New(mqtt.Options{})
	if err := mt.Listen(); err != nil {
		t.Fatal(err)
	}
	leaf, _ := leafnode.New(leafnode.Options{Remotes: []leafnode.Remote{{URLs: []string{"nats-leaf://" + testpeer.Addr(testpeer.FreePort(t))}}}, Reconnect: 100 * time.Millisecond})
	if err := b.Start(mt, leaf, st); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	o := paho.NewClientOptions().AddBroker("tcp://" + mt.Addr().String()).SetClientID("x").SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	tok := c.Connect()
	tok.WaitTimeout(10 * time.Second)
	if tok.Error() == nil {
		t.Fatal("connected while the hub is unreachable")
	}
	if ct, ok := tok.(*paho.ConnectToken); !ok || ct.ReturnCode() != 3 {
		t.Fatalf("want CONNACK 0x03 (server unavailable), got %v", tok.Error())
	}
}

// TestHubNodeKilled: the hub node an instance's link is attached to is
// killed; the link fails over, the state (three replicas) stays, and MQTT
// goes on: a retained message set after the failover is seen on another
// instance, with the one set before.
func TestHubNodeKilled(t *testing.T) {
	hubs := jsCluster(t)
	urls := []string{hubs[0].LeafURL, hubs[1].LeafURL, hubs[2].LeafURL}
	a := startInstance(t, "a", urls, nil)
	bb := startInstance(t, "b", []string{hubs[2].LeafURL, hubs[1].LeafURL}, nil)
	pa := mqttConnect(t, a.mqtt, "pub-a", true, nil)
	wait(t, pa.Publish("door/1", 1, true, "before"))
	attached := a.leaf.Stats()[0].URL
	for _, h := range hubs {
		if h.LeafURL == attached {
			h.Kill()
		}
	}
	waitFor(t, 30*time.Second, "a's link on another hub node and its state ready", func() error {
		st := a.leaf.Stats()[0]
		if !st.Up || st.URL == attached {
			return fmt.Errorf("link %+v", st)
		}
		return a.st.Ready()
	})
	waitFor(t, 30*time.Second, "a retained publish after the failover", func() error {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("pub-a2").SetAutoReconnect(false).SetConnectRetry(false))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("connect: %v", tok.Error())
		}
		defer c.Disconnect(0)
		if tok := c.Publish("door/2", 1, true, "after"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("publish: %v", tok.Error())
		}
		return nil
	})
	waitFor(t, 60*time.Second, "both retained messages on b", func() error {
		if n := mqtt.Retained(bb.b); n != 2 {
			return fmt.Errorf("b holds %d", n)
		}
		return nil
	})
}

// TestGateAcrossInstances: the permission matrix's rows for state that
// crosses instances through the hub. A retained message set on one
// instance stays in its account on the other and is replayed there only
// to subscribers allowed to receive it; a session moved to another
// instance keeps its identity's account and subscribe permission.
func TestGateAcrossInstances(t *testing.T) {
	hubs := jsCluster(t)
	deny := &auth.Permissions{Subscribe: &auth.SubjectPermission{Deny: []string{"secret.>"}}}
	users := auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		switch {
		case c.User == "a-pub" && c.Password == "pw":
			return &auth.Identity{Name: "a-pub", Account: "A"}, true, nil
		case c.User == "a-sub" && c.Password == "pw":
			return &auth.Identity{Name: "a-sub", Account: "A", Perms: deny}, true, nil
		case c.User == "b-sub" && c.Password == "pw":
			return &auth.Identity{Name: "b-sub", Account: "B"}, true, nil
		}
		return nil, false, nil
	})
	one := startInstance(t, "one", []string{hubs[0].LeafURL}, users)
	two := startInstance(t, "two", []string{hubs[1].LeafURL}, users)
	connectAs := func(url, id, user string, clean bool, h paho.MessageHandler) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword("pw").
			SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).SetDefaultPublishHandler(h))
		wait(t, c.Connect())
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	pub := connectAs(one.mqtt, "p", "a-pub", true, nil)
	wait(t, pub.Publish("secret/x", 1, true, "s"))
	wait(t, pub.Publish("open/x", 1, true, "o"))
	waitFor(t, 10*time.Second, "two holds both", func() error {
		if n := mqtt.Retained(two.b); n != 2 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
	// Account B on the other instance: nothing of A's, proven by its own
	// retained marker arriving alone.
	gotB := make(chan string, 10)
	bsub := connectAs(two.mqtt, "bs", "b-sub", true, func(_ paho.Client, m paho.Message) { gotB <- m.Topic() })
	wait(t, bsub.Publish("b/marker", 1, true, "m"))
	wait(t, bsub.Subscribe("#", 1, nil))
	if g := <-gotB; g != "b/marker" {
		t.Fatalf("account B got %q from account A", g)
	}
	// Account A's subscriber with a deny on secret.>: open/x only.
	gotA := make(chan string, 10)
	asub := connectAs(two.mqtt, "as", "a-sub", false, func(_ paho.Client, m paho.Message) { gotA <- m.Topic() })
	wait(t, asub.Subscribe("#", 1, nil))
	if g := <-gotA; g != "open/x" {
		t.Fatalf("a-sub replayed %q", g)
	}
	// Offline, its session queues on instance two (where it is held; a
	// leaf remote carries one account, the global one here, so account A's
	// live traffic stays on each instance), then moves to instance one:
	// the queued message comes along, nothing secret does.
	asub.Disconnect(100)
	pub2 := connectAs(two.mqtt, "p2", "a-pub", true, nil)
	wait(t, pub2.Publish("secret/y", 1, false, "s2"))
	wait(t, pub2.Publish("open/y", 1, false, "o2"))
	connectAs(one.mqtt, "as", "a-sub", false, func(_ paho.Client, m paho.Message) { gotA <- m.Topic() })
	for {
		select {
		case g := <-gotA:
			if g == "open/y" {
				return
			}
			if g != "open/x" { // retained replay again is fine
				t.Fatalf("moved session got %q", g)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("open/y not delivered to the moved session")
		}
	}
}
