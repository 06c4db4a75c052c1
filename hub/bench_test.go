package hub_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
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
//	go test ./hub -run '^$' -bench . -benchtime 200x
//
// Each reports p50/p99 in ms (custom metrics); ns/op is the mean.

// natsLeaf starts a nats-server leaf with MQTT state in the hub.
func natsLeaf(t testing.TB, name, leafURL string) string {
	mqttPort := testpeer.FreePort(t)
	h := natsserver.Start(t, natsserver.Binary(t, "2.15.2"), natsserver.Config{Name: name,
		Leaf: fmt.Sprintf("remotes: [{url: %q}]", leafURL),
		Top:  fmt.Sprintf("mqtt { port: %d, js_domain: hub }\n", mqttPort)})
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
