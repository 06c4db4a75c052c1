package hub_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/mqtt"
)

// Benchmarks of MQTT state in the hub, busbar instances against
// nats-server 2.15.2 leaves with mqtt { js_domain: hub } on the same
// three-node hub, in one run:
//
//	go test ./hub -run '^$' -bench 'Connect|Takeover|Subscribe' -benchtime 200x
//	go test ./hub -run '^$' -bench QoS1 -benchtime 20000x [-hub.replicas 1]
//
// At their defaults busbar's buckets have 3 replicas on a 3-node hub and a
// nats-server leaf's MQTT streams 1 (its own JetStream is not clustered);
// -hub.replicas N gives both N.
//
// Each reports p50/p99 in ms (custom metrics); ns/op is the mean.

// replicas of the hub streams both kinds of instance create; 0: their
// defaults (busbar: up to 3, as many as the hub has; a nats-server leaf,
// its JetStream not clustered: 1).
var replicas = flag.Int("hub.replicas", 0, "replicas of the MQTT streams busbar and nats-server leaves create (0: their defaults)")

// natsLeaf starts a nats-server leaf with MQTT state in the hub.
func natsLeaf(t testing.TB, name, leafURL string) string {
	mqttPort := testpeer.FreePort(t)
	sr := ""
	if *replicas > 0 {
		sr = fmt.Sprintf(", stream_replicas: %d", *replicas)
	}
	h := natsserver.Start(t, natsserver.Binary(t, "2.15.2"), natsserver.Config{Name: name,
		Leaf: fmt.Sprintf("remotes: [{url: %q}]", leafURL),
		Top:  fmt.Sprintf("mqtt { port: %d, js_domain: hub%s }\n", mqttPort, sr)})
	_ = h
	url := "tcp://" + testpeer.Addr(mqttPort)
	waitFor(t, 30*time.Second, name+" MQTT", func() error {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("probe").SetAutoReconnect(false).SetConnectRetry(false))
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() != nil {
			return tok.Error()
		}
		c.Disconnect(0)
		return nil
	})
	return url
}

type peers struct{ a, b string } // b "": one instance, no hub (the local-store reference)

// startLocal is a busbar with its MQTT state in memory, no hub.
func startLocal(b *testing.B) string {
	br, err := broker.New(broker.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mt, err := mqtt.New(mqtt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(mt); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Shutdown(context.Background()) })
	return "tcp://" + mt.Addr().String()
}

func (p peers) other() string {
	if p.b == "" {
		return p.a
	}
	return p.b
}

func benchPeers(b *testing.B) map[string]peers {
	hubs := jsCluster(b)
	ia := startInstance(b, "a", []string{hubs[0].LeafURL}, nil)
	ib := startInstance(b, "b", []string{hubs[1].LeafURL}, nil)
	return map[string]peers{
		"busbar-local": {startLocal(b), ""},
		"busbar":       {ia.mqtt, ib.mqtt},
		"nats-server":  {natsLeaf(b, "leaf-a", hubs[0].LeafURL), natsLeaf(b, "leaf-b", hubs[1].LeafURL)},
	}
}

func report(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / 1e6 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkConnectOwnership: CONNECT (persistent session, a new client id
// each time) to CONNACK, the ownership claim in the hub included.
func BenchmarkConnectOwnership(b *testing.B) {
	for name, p := range benchPeers(b) {
		b.Run(name, func(b *testing.B) {
			var d []time.Duration
			for i := 0; b.Loop(); i++ {
				c := paho.NewClient(paho.NewClientOptions().AddBroker(p.a).SetClientID(name + "-c" + strconv.Itoa(i)).
					SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false))
				t0 := time.Now()
				tok := c.Connect()
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				d = append(d, time.Since(t0))
				c.Disconnect(0)
			}
			report(b, d)
		})
	}
}

// BenchmarkTakeover: a client id connected on one instance connects on
// the other; the time until the first connection is closed.
func BenchmarkTakeover(b *testing.B) {
	for name, p := range benchPeers(b) {
		b.Run(name, func(b *testing.B) {
			var d []time.Duration
			refused := 0
			for i := 0; b.Loop(); i++ {
				id := name + "-t" + strconv.Itoa(i)
				lost := make(chan time.Time, 1)
				c1 := paho.NewClient(paho.NewClientOptions().AddBroker(p.a).SetClientID(id).SetCleanSession(false).
					SetAutoReconnect(false).SetConnectRetry(false).
					SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() }))
				if tok := c1.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				c2 := paho.NewClient(paho.NewClientOptions().AddBroker(p.other()).SetClientID(id).SetCleanSession(false).
					SetAutoReconnect(false).SetConnectRetry(false))
				t0 := time.Now()
				if tok := c2.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					refused++ // the new connection itself was refused
					c1.Disconnect(0)
					continue
				}
				select {
				case at := <-lost:
					d = append(d, at.Sub(t0))
				case <-time.After(10 * time.Second):
					b.Fatal("no takeover")
				}
				c2.Disconnect(0)
			}
			report(b, d)
			b.ReportMetric(float64(refused), "refused")
		})
	}
}

// BenchmarkSubscribeRetained: SUBSCRIBE to a filter matching 10,000
// retained messages (set on the other instance) until all arrived.
func BenchmarkSubscribeRetained(b *testing.B) {
	const n = 10000
	for name, p := range benchPeers(b) {
		b.Run(name, func(b *testing.B) {
			pub := paho.NewClient(paho.NewClientOptions().AddBroker(p.other()).SetClientID(name + "-rpub").SetAutoReconnect(false))
			if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatal(tok.Error())
			}
			var last paho.Token
			for i := range n {
				last = pub.Publish("ret/"+strconv.Itoa(i), 1, true, "v")
			}
			if !last.WaitTimeout(60*time.Second) || last.Error() != nil {
				b.Fatal(last.Error())
			}
			pub.Disconnect(0)
			time.Sleep(2 * time.Second) // let the other instance hear of them (not measured)
			var d []time.Duration
			for i := 0; b.Loop(); i++ {
				got := make(chan struct{}, n)
				c := paho.NewClient(paho.NewClientOptions().AddBroker(p.a).SetClientID(name + "-rs" + strconv.Itoa(i)).
					SetAutoReconnect(false).SetConnectRetry(false).SetMaxResumePubInFlight(n))
				if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				t0 := time.Now()
				c.Subscribe("ret/#", 0, func(paho.Client, paho.Message) { got <- struct{}{} })
				for range n {
					select {
					case <-got:
					case <-time.After(30 * time.Second):
						b.Fatal("retained messages missing")
					}
				}
				d = append(d, time.Since(t0))
				c.Disconnect(0)
			}
			report(b, d)
		})
	}
}

// BenchmarkQoS1AcrossInstances: QoS 1 publishes on one instance to a QoS 1
// subscriber on the other (3.1.1, paho; the subscriber's session
// persistent: its queue is the hub's, or nats-server's $MQTT_msgs, so
// every message goes through the hub's JetStream), one message per
// iteration, 64-byte payloads carrying their send time:
//
//	go test ./hub -run '^$' -bench QoS1 -benchtime 20000x
//
// window100: the publisher keeps up to 100 PUBACKs outstanding; msgs/s
// counts first publish to last delivery, and the latencies are under that
// load. one-by-one: the next message is published once the previous one
// was delivered and acknowledged, so p50/p99 are latency without queueing.
// busbar-local is one instance with its state in memory (publisher and
// subscriber on it).
func BenchmarkQoS1AcrossInstances(b *testing.B) {
	for name, p := range benchPeers(b) {
		for _, w := range []struct {
			name   string
			window int
		}{{"window100", 100}, {"one-by-one", 1}} {
			b.Run(name+"/"+w.name, func(b *testing.B) { qos1Across(b, name, p, w.window) })
		}
	}
}

var benchRun atomic.Int64

func qos1Across(b *testing.B, name string, p peers, window int) {
	n := b.N
	run := strconv.FormatInt(benchRun.Add(1), 10)
	topic := "q1/" + name + "/" + run
	const warm = 50 // published one by one before the clock starts
	var (
		mu    sync.Mutex
		seen  = make([]bool, n+warm)
		lat   = make([]time.Duration, 0, n)
		count int
		last  time.Time
	)
	arrived := make(chan int, n+warm)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(p.other()).SetClientID(name + "-q1s" + run).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			now := time.Now()
			pl := m.Payload()
			if len(pl) < 16 {
				return
			}
			sent := int64(binary.BigEndian.Uint64(pl))
			seq := int(binary.BigEndian.Uint64(pl[8:]))
			mu.Lock()
			if seq < 0 || seq >= len(seen) || seen[seq] {
				mu.Unlock()
				return // a redelivery
			}
			seen[seq] = true
			if seq >= warm {
				lat = append(lat, now.Sub(time.Unix(0, sent)))
				count++
				last = now
			}
			mu.Unlock()
			arrived <- seq
		}))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(p.a).SetClientID(name + "-q1p" + run).
		SetAutoReconnect(false).SetConnectRetry(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	payload := func(seq int) []byte {
		pl := make([]byte, 64)
		binary.BigEndian.PutUint64(pl, uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(pl[8:], uint64(seq))
		return pl
	}
	waitTok := func(t paho.Token) {
		if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("publish: %v", t.Error())
		}
	}
	waitArrival := func() {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			mu.Lock()
			defer mu.Unlock()
			b.Fatalf("%d of %d messages delivered", count, n)
		}
	}
	// Warm-up: the subscription (on nats-server its JetStream consumer)
	// delivers before the clock starts.
	waitFor(b, 30*time.Second, "subscription on the other instance", func() error {
		waitTok(pub.Publish(topic, 1, false, payload(0)))
		select {
		case <-arrived:
			return nil
		case <-time.After(time.Second):
			return errors.New("first message not delivered")
		}
	})
	for i := 1; i < warm; i++ {
		waitTok(pub.Publish(topic, 1, false, payload(i)))
		waitArrival()
	}
	toks := make([]paho.Token, n)
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		if i >= window {
			waitTok(toks[i-window])
		}
		toks[i] = pub.Publish(topic, 1, false, payload(warm+i))
		if window == 1 {
			waitTok(toks[i])
			waitArrival()
		}
	}
	for _, t := range toks {
		waitTok(t)
	}
	if window > 1 {
		for range n {
			waitArrival()
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(float64(count)/last.Sub(start).Seconds(), "msgs/s")
	report(b, lat)
}
