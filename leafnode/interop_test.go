package leafnode_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
)

// leaf is one busbar instance joined to a hub.
type leaf struct {
	b    *broker.Broker
	svc  *leafnode.Service
	nats string // nats:// URL of its NATS listener
	mqtt string // tcp:// of its MQTT listener ("" when not started)
}

type leafOpts struct {
	name   string
	mqtt   bool
	remote leafnode.Remote
}

func startLeaf(t *testing.T, o leafOpts) *leaf {
	t.Helper()
	b, err := broker.New(broker.Options{ServerName: o.name, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := natsproto.New(natsproto.Options{Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := nt.Listen(); err != nil {
		t.Fatal(err)
	}
	svcs := []broker.Service{nt}
	l := &leaf{b: b, nats: "nats://" + nt.Addr().String()}
	if o.mqtt {
		mt, err := mqtt.New(mqtt.Options{Port: 0})
		if err != nil {
			t.Fatal(err)
		}
		if err := mt.Listen(); err != nil {
			t.Fatal(err)
		}
		l.mqtt = "tcp://" + mt.Addr().String()
		svcs = append(svcs, mt)
	}
	l.svc, err = leafnode.New(leafnode.Options{Remotes: []leafnode.Remote{o.remote}, Reconnect: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svcs = append(svcs, l.svc)
	if err := b.Start(svcs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	return l
}

// waitUp waits until every remote of l is connected.
func (l *leaf) waitUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		up := true
		for _, st := range l.svc.Stats() {
			up = up && st.Up
		}
		if up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaf link not up after 10s: %+v", l.svc.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats.Connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// eventually retries f until it returns nil or 10s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

// published waits until a message sent on subj by pub reaches sub (the
// interest has crossed the hub), publishing again while it does not.
func published(t *testing.T, pub *nats.Conn, sub *nats.Subscription, subj string) {
	t.Helper()
	eventually(t, "interest to cross the hub on "+subj, func() error {
		if err := pub.Publish(subj, []byte("probe")); err != nil {
			return err
		}
		_ = pub.Flush()
		if _, err := sub.NextMsg(100 * time.Millisecond); err != nil {
			return err
		}
		return nil
	})
	for { // drop extra probes
		if _, err := sub.NextMsg(50 * time.Millisecond); err != nil {
			return
		}
	}
}

func forVersions(t *testing.T, f func(t *testing.T, bin string)) {
	for _, v := range natsserver.Versions {
		t.Run("nats-server-"+v, func(t *testing.T) {
			f(t, natsserver.Binary(t, v))
		})
	}
}

// TestLeafPubSub: two busbar leaves on one hub exchange NATS messages
// both ways, and with a client of the hub itself.
func TestLeafPubSub(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		b := startLeaf(t, leafOpts{name: "leafB", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a.waitUp(t)
		b.waitUp(t)
		hub.WaitLeafs(t, 2)

		ca, cb, ch := connect(t, a.nats), connect(t, b.nats), connect(t, hub.ClientURL)
		subB, _ := cb.SubscribeSync("to.b")
		subA, _ := ca.SubscribeSync("to.a.>")
		subH, _ := ch.SubscribeSync("to.hub")
		cb.Flush()
		ca.Flush()
		ch.Flush()
		published(t, ca, subB, "to.b")
		published(t, cb, subA, "to.a.x")
		published(t, ca, subH, "to.hub")
		published(t, ch, subA, "to.a.y")

		for i := range 100 {
			ca.Publish("to.b", []byte(fmt.Sprint(i)))
			cb.Publish("to.a.z", []byte(fmt.Sprint(i)))
		}
		for i := range 100 {
			m, err := subB.NextMsg(5 * time.Second)
			if err != nil || string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("leaf B message %d: %v %v", i, err, m)
			}
			m, err = subA.NextMsg(5 * time.Second)
			if err != nil || string(m.Data) != fmt.Sprint(i) || m.Subject != "to.a.z" {
				t.Fatalf("leaf A message %d: %v %v", i, err, m)
			}
		}
		// Exactly once: a leaf with two matching subscriptions on the hub
		// side still gets one copy per subscriber.
		subH2, _ := ch.SubscribeSync("to.>")
		ch.Flush()
		published(t, ca, subH2, "to.x")
		ca.Publish("to.hub", []byte("once"))
		ca.Flush()
		if m, err := subH.NextMsg(5 * time.Second); err != nil || string(m.Data) != "once" {
			t.Fatalf("hub subscriber: %v %v", err, m)
		}
		if m, err := subH2.NextMsg(5 * time.Second); err != nil || string(m.Data) != "once" {
			t.Fatalf("hub wildcard subscriber: %v %v", err, m)
		}
		if m, err := subH.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("duplicate at the hub: %q", m.Data)
		}
		// Unsubscribing on B removes the interest from the hub.
		subB.Unsubscribe()
		cb.Flush()
		eventually(t, "LS- to reach the hub", func() error {
			// A: $LDS and to.a.>; B: $LDS only.
			if n := leafSubs(t, hub); n != 3 {
				return fmt.Errorf("the leaves hold %d subscriptions at the hub, want 3", n)
			}
			return nil
		})
	})
}

var _ = sync.Mutex{}

// leafSubs is the number of subscriptions the hub holds for its leaves.
func leafSubs(t *testing.T, hub *natsserver.Hub) int {
	n := 0
	for _, l := range hub.Leafz(t).Leafs {
		n += l.Subs
	}
	return n
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestLeafQueueGroup: a queue group with members on both leaves gets
// every message exactly once; a publisher's own leaf is picked first.
func TestLeafQueueGroup(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		b := startLeaf(t, leafOpts{name: "leafB", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a.waitUp(t)
		b.waitUp(t)
		ca, cb, ch := connect(t, a.nats), connect(t, b.nats), connect(t, hub.ClientURL)
		var mu sync.Mutex
		got := map[string]int{}
		byLeaf := map[string]int{}
		member := func(nc *nats.Conn, who string) {
			if _, err := nc.QueueSubscribe("work", "workers", func(m *nats.Msg) {
				mu.Lock()
				got[string(m.Data)]++
				byLeaf[who]++
				mu.Unlock()
			}); err != nil {
				t.Fatal(err)
			}
			nc.Flush()
		}
		member(ca, "A")
		member(ca, "A")
		member(cb, "B")
		// B's member is known to the hub, and through it to A.
		eventually(t, "queue interest of both leaves at the hub", func() error {
			if n := leafSubs(t, hub); n != 4 { // $LDS and the group, per leaf
				return fmt.Errorf("%d subscriptions, want 4", n)
			}
			return nil
		})
		const n = 2000
		for i := range n {
			ca.Publish("work", []byte(fmt.Sprint("a", i)))
		}
		ca.Flush()
		// From the hub: the group spans both leaves; each message once.
		for i := range n {
			ch.Publish("work", []byte(fmt.Sprint("h", i)))
		}
		ch.Flush()
		exactlyOnce(t, &mu, got, 2*n)
		mu.Lock()
		defer mu.Unlock()
		// Local first: all of A's own publishes stayed on A.
		if byLeaf["A"] < n {
			t.Fatalf("leaf A's members got %d messages, want at least its own %d (local first)", byLeaf["A"], n)
		}
		// Remove A's members: A's publishes now go to B through the hub.
		ca.Close()
		ca2 := connect(t, a.nats)
		sub := make(chan *nats.Msg, 10)
		// wait until A has learnt that only the hub holds the group
		eventually(t, "A's publish to reach B's member", func() error {
			before := byLeaf["B"]
			mu.Unlock()
			ca2.Publish("work", []byte("via-hub"))
			ca2.Flush()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			if byLeaf["B"] == before {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		_ = sub
	})
}

// TestLeafRequestReply: a request with headers from leaf A is answered
// by a responder on leaf B; once B's responder is gone, A's requester
// gets no responders.
func TestLeafRequestReply(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		b := startLeaf(t, leafOpts{name: "leafB", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a.waitUp(t)
		b.waitUp(t)
		ca, cb := connect(t, a.nats), connect(t, b.nats)
		sub, err := cb.Subscribe("svc.echo", func(m *nats.Msg) {
			r := nats.NewMsg(m.Reply)
			r.Header.Set("X-Seen", m.Header.Get("X-Req"))
			r.Data = append([]byte("echo:"), m.Data...)
			m.RespondMsg(r)
		})
		if err != nil {
			t.Fatal(err)
		}
		cb.Flush()
		var resp *nats.Msg
		eventually(t, "request across leaves", func() error {
			req := nats.NewMsg("svc.echo")
			req.Header.Set("X-Req", "h1")
			req.Data = []byte("hi")
			var err error
			resp, err = ca.RequestMsg(req, 500*time.Millisecond)
			return err
		})
		if string(resp.Data) != "echo:hi" || resp.Header.Get("X-Seen") != "h1" {
			t.Fatalf("response %q headers %v", resp.Data, resp.Header)
		}
		for i := range 50 {
			resp, err := ca.Request("svc.echo", []byte(fmt.Sprint(i)), 2*time.Second)
			if err != nil || string(resp.Data) != fmt.Sprint("echo:", i) {
				t.Fatalf("request %d: %v %v", i, err, resp)
			}
		}
		sub.Unsubscribe()
		cb.Flush()
		eventually(t, "no responders once B's responder left", func() error {
			_, err := ca.Request("svc.echo", nil, 500*time.Millisecond)
			if err == nats.ErrNoResponders {
				return nil
			}
			return fmt.Errorf("got %v", err)
		})
	})
}

// TestLeafMQTT: an MQTT publish on leaf A reaches a NATS and an MQTT
// subscriber on leaf B (topic mapping intact, a/# as a and a.>), and a
// NATS subscriber on the hub sees nats-server's Nmqtt-Pub header.
func TestLeafMQTT(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		a := startLeaf(t, leafOpts{name: "leafA", mqtt: true, remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		b := startLeaf(t, leafOpts{name: "leafB", mqtt: true, remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a.waitUp(t)
		b.waitUp(t)
		got := make(chan paho.Message, 100)
		mb := mqttClient(t, b.mqtt, "sub-b")
		if tok := mb.Subscribe("sensors/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		cb, ch := connect(t, b.nats), connect(t, hub.ClientURL)
		natsB, _ := cb.SubscribeSync("sensors.>")
		natsH, _ := ch.SubscribeSync("sensors.>")
		cb.Flush()
		ch.Flush()
		ma := mqttClient(t, a.mqtt, "pub-a")
		eventually(t, "MQTT publish to cross", func() error {
			ma.Publish("sensors/probe", 0, false, "p").WaitTimeout(time.Second)
			select {
			case <-got:
				return nil
			case <-time.After(100 * time.Millisecond):
				return fmt.Errorf("not yet")
			}
		})
		drain := func() {
			for {
				select {
				case <-got:
				case <-time.After(100 * time.Millisecond):
					return
				}
			}
		}
		drain()
		for {
			if _, err := natsB.NextMsg(50 * time.Millisecond); err != nil {
				break
			}
		}
		for {
			if _, err := natsH.NextMsg(50 * time.Millisecond); err != nil {
				break
			}
		}
		if tok := ma.Publish("sensors/room.1/temp", 1, false, "21.5"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case m := <-got:
			if m.Topic() != "sensors/room.1/temp" || string(m.Payload()) != "21.5" || m.Qos() != 1 {
				t.Fatalf("MQTT on B: topic %q payload %q qos %d", m.Topic(), m.Payload(), m.Qos())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("MQTT subscriber on B got nothing")
		}
		m, err := natsB.NextMsg(5 * time.Second)
		if err != nil || m.Subject != "sensors.room//1.temp" || string(m.Data) != "21.5" {
			t.Fatalf("NATS on B: %v %+v", err, m)
		}
		m, err = natsH.NextMsg(5 * time.Second)
		if err != nil || m.Subject != "sensors.room//1.temp" || m.Header.Get("Nmqtt-Pub") != "1" {
			t.Fatalf("NATS on the hub: %v %+v", err, m)
		}
		// "sensors/#" also covers the parent topic "sensors".
		ma.Publish("sensors", 0, false, "top").WaitTimeout(5 * time.Second)
		select {
		case m := <-got:
			if m.Topic() != "sensors" || string(m.Payload()) != "top" {
				t.Fatalf("MQTT parent topic: %q %q", m.Topic(), m.Payload())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("MQTT subscriber on B did not get the parent topic")
		}
	})
}

func mqttClient(t *testing.T, url, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// TestLeafFailover: the hub a leaf is attached to is SIGKILLed; the leaf
// reconnects to another hub of the cluster, resends its interest, and
// traffic resumes.
func TestLeafFailover(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hubs := natsserver.Cluster(t, bin, 3, "")
		// A knows only hub1 then hub2 (no randomizing): it lands on hub1.
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hubs[0].LeafURL, hubs[1].LeafURL}, NoRandomize: true}})
		b := startLeaf(t, leafOpts{name: "leafB", remote: leafnode.Remote{URLs: []string{hubs[2].LeafURL}}})
		a.waitUp(t)
		b.waitUp(t)
		ca, cb := connect(t, a.nats), connect(t, b.nats)
		subA, _ := ca.SubscribeSync("to.a")
		subB, _ := cb.SubscribeSync("to.b")
		ca.Flush()
		cb.Flush()
		published(t, cb, subA, "to.a")
		published(t, ca, subB, "to.b")
		if st := a.svc.Stats()[0]; st.URL != hubs[0].LeafURL {
			t.Fatalf("leaf A is on %s, want %s", st.URL, hubs[0].LeafURL)
		}
		hubs[0].Kill()
		start := time.Now()
		published(t, cb, subA, "to.a")
		published(t, ca, subB, "to.b")
		t.Logf("traffic resumed %v after the SIGKILL", time.Since(start))
		st := a.svc.Stats()[0]
		if st.URL == hubs[0].LeafURL || st.Reconnects < 1 {
			t.Fatalf("leaf A after failover: %+v", st)
		}
	})
}

// TestLeafDeny: deny_exports keeps subjects from the hub, deny_imports
// keeps them from the leaf.
func TestLeafDeny(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hub.LeafURL},
			DenyExports: []string{"secret.out.>"}, DenyImports: []string{"secret.in.>"}}})
		a.waitUp(t)
		ca, ch := connect(t, a.nats), connect(t, hub.ClientURL)
		hubSub, _ := ch.SubscribeSync(">")
		leafSub, _ := ca.SubscribeSync(">")
		ch.Flush()
		ca.Flush()
		published(t, ca, hubSub, "open.out")
		published(t, ch, leafSub, "open.in")
		ca.Publish("secret.out.x", []byte("no"))
		ch.Publish("secret.in.x", []byte("no"))
		ca.Publish("open.out", []byte("yes"))
		ch.Publish("open.in", []byte("yes"))
		ca.Flush()
		ch.Flush()
		for _, s := range []*nats.Subscription{hubSub, leafSub} {
			for {
				m, err := s.NextMsg(300 * time.Millisecond)
				if err != nil {
					break
				}
				// Each side's own publish is delivered locally: only the far side counts.
				if (s == hubSub && m.Subject == "secret.out.x") || (s == leafSub && m.Subject == "secret.in.x") {
					t.Fatalf("denied subject %s crossed the link", m.Subject)
				}
			}
		}
	})
}

// TestLeafWithNATSLeaf: a nats-server leaf and a busbar leaf on the same
// hub exchange messages both ways.
func TestLeafWithNATSLeaf(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		nl := natsserver.Start(t, bin, natsserver.Config{Name: "natsleaf", Leaf: fmt.Sprintf("remotes [{url: %q}]", hub.LeafURL)})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a.waitUp(t)
		hub.WaitLeafs(t, 2)
		ca, cn := connect(t, a.nats), connect(t, nl.ClientURL)
		subA, _ := ca.SubscribeSync("to.busbar")
		subN, _ := cn.SubscribeSync("to.nats")
		ca.Flush()
		cn.Flush()
		published(t, cn, subA, "to.busbar")
		published(t, ca, subN, "to.nats")
		// A queue group spanning both leaves: each message once.
		var mu sync.Mutex
		seen := map[string]int{}
		for _, nc := range []*nats.Conn{ca, cn} {
			nc.QueueSubscribe("jobs", "q", func(m *nats.Msg) { mu.Lock(); seen[string(m.Data)]++; mu.Unlock() })
			nc.Flush()
		}
		time.Sleep(300 * time.Millisecond)
		ch := connect(t, hub.ClientURL)
		for i := range 500 {
			ch.Publish("jobs", []byte(fmt.Sprint(i)))
		}
		ch.Flush()
		exactlyOnce(t, &mu, seen, 500)
	})
}

// TestLeafTLS: a hub whose leafnode port requires TLS; the link verifies
// it with the test CA and traffic flows.
func TestLeafTLS(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		cf := testcert.Write(t)
		hub := natsserver.Start(t, bin, natsserver.Config{Leaf: fmt.Sprintf("  tls { cert_file: %q, key_file: %q }", cf.ServerCert, cf.ServerKey)})
		// A link without the CA is refused by certificate verification.
		bad := startLeaf(t, leafOpts{name: "leafBad", remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
		a := startLeaf(t, leafOpts{name: "leafA", remote: leafnode.Remote{URLs: []string{strings.Replace(hub.LeafURL, "nats-leaf://", "tls://", 1)},
			TLS: &tls.Config{RootCAs: cf.Pool, MinVersion: tls.VersionTLS12}}})
		a.waitUp(t)
		ca, ch := connect(t, a.nats), connect(t, hub.ClientURL)
		subA, _ := ca.SubscribeSync("to.a")
		subH, _ := ch.SubscribeSync("to.hub")
		ca.Flush()
		ch.Flush()
		published(t, ch, subA, "to.a")
		published(t, ca, subH, "to.hub")
		eventually(t, "the link without the CA to fail verification", func() error {
			if st := bad.svc.Stats()[0]; st.Up || !strings.Contains(st.LastError, "tls") {
				return fmt.Errorf("link without the CA: %+v", st)
			}
			return nil
		})
		if bad.svc.Stats()[0].Up {
			t.Fatal("a link without the CA came up")
		}
	})
}

// exactlyOnce waits until got (guarded by mu) holds n distinct messages,
// then a while longer for duplicates, and fails on any message counted
// more than once.
func exactlyOnce(t *testing.T, mu *sync.Mutex, got map[string]int, n int) {
	t.Helper()
	eventually(t, "every message", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != n {
			return fmt.Errorf("%d distinct of %d", len(got), n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for k, c := range got {
		if c != 1 {
			t.Fatalf("message %q delivered %d times", k, c)
		}
	}
}

// TestLeafSubjectTooLongForTheHub: an MQTT topic can be 65,535 bytes, but
// the hub closes a leaf link whose protocol line passes 16 times its
// max_control_line (64 KiB by default). Such a message, or such a
// subscription's interest, stays on the leaf (counted in TooLong); the
// link stays up and the next message crosses.
func TestLeafSubjectTooLongForTheHub(t *testing.T) {
	hub := natsserver.Start(t, natsserver.Binary(t, "2.15.2"), natsserver.Config{})
	l := startLeaf(t, leafOpts{name: "long", mqtt: true, remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
	l.waitUp(t)
	hc := connect(t, hub.ClientURL)
	sub, err := hc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the hub's interest on the leaf", func() error {
		if n := leafSubs(t, hub); n == 0 {
			return fmt.Errorf("no interest yet")
		}
		return nil
	})
	mc := mqttClient(t, l.mqtt, "long-pub")
	long := strings.Repeat("x/", 32760) + "end"
	// A subscription that long: its interest does not go to the hub either.
	if tok := mc.Subscribe(long+"/#", 0, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := mc.Publish(long, 0, false, "too long"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := mc.Publish("short/after", 0, false, "ok"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "short.after" {
		t.Fatalf("the hub got %q first", m.Subject)
	}
	// A round trip through the hub after everything: the link is the one
	// that carried all of it.
	if tok := mc.Publish("short/last", 0, false, "ok"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || m.Subject != "short.last" {
		t.Fatalf("the hub got %v, %v", m, err)
	}
	st := l.svc.Stats()[0]
	if st.TooLong < 2 || st.Reconnects != 0 || !st.Up {
		t.Fatalf("stats %+v: want the long one kept back, the link never lost", st)
	}
}

// TestLeafLongSubjectFromTheHub: another leaf's MQTT client publishes on a
// 10 KB topic; the hub forwards it (a leaf link takes 64 KiB lines), and
// busbar's link reads it and delivers it (it took 4 KiB and dropped the
// link before).
func TestLeafLongSubjectFromTheHub(t *testing.T) {
	hub := natsserver.Start(t, natsserver.Binary(t, "2.15.2"), natsserver.Config{})
	from := startLeaf(t, leafOpts{name: "from", mqtt: true, remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
	to := startLeaf(t, leafOpts{name: "to", mqtt: true, remote: leafnode.Remote{URLs: []string{hub.LeafURL}}})
	from.waitUp(t)
	to.waitUp(t)
	long := strings.Repeat("y/", 5000) + "end"
	got := make(chan string, 100)
	rc := mqttClient(t, to.mqtt, "long-to")
	if tok := rc.Subscribe(long, 0, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	mc := mqttClient(t, from.mqtt, "long-from")
	eventually(t, "a message on the long topic delivered across the hub", func() error {
		if tok := mc.Publish(long, 0, false, "far"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("publish: %v", tok.Error())
		}
		select {
		case <-got:
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("not delivered")
		}
	})
	if st := to.svc.Stats()[0]; st.Reconnects != 0 {
		t.Fatalf("the receiving link was lost: %+v", st)
	}
}
