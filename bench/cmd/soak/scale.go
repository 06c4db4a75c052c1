package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/mqtt/packet"
)

// runScale holds o.conns MQTT connections (o.active of them under a QoS 1
// load of o.rate msgs/s, each publishing to the next one's topic) and
// reports RSS per connection, the load's rate and latency.
func runScale(o opts) error {
	tmp, err := os.MkdirTemp("", "busbar-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := buildBusbar(o, tmp)
	if err != nil {
		return err
	}
	logs, err := os.Create(filepath.Join(tmp, "busbar.log"))
	if err != nil {
		return err
	}
	port := freePort()
	conf := filepath.Join(tmp, "busbar.conf")
	// max_connections past the default 64K; no store: sessions are clean.
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nmax_connections: %d\nmqtt { listen: 127.0.0.1:%d }\n",
		freePort(), o.conns+1000, port), 0o644); err != nil {
		return err
	}
	c := &child{bin: bin, conf: conf, port: port, logs: logs}
	if err := c.start(); err != nil {
		return err
	}
	defer c.kill()
	time.Sleep(time.Second) // let the runtime settle before the baseline
	base := rss(c.pid())
	fmt.Printf("scale %s  %d CPUs  %d MQTT connections, %d of them under %d QoS 1 msgs/s (%d B) for %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), o.conns, o.active, o.rate, o.payload, o.duration)
	fmt.Printf("busbar RSS with no connection: %s\n", mb(base))

	// Idle connections, from 127.0.0.2 and up (28k ports each).
	idle := o.conns - o.active
	began := time.Now()
	conns := make([]*mconn, idle)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(idle) {
					return
				}
				local := net.IPv4(127, 0, 0, byte(2+i/25000))
				m, _, err := dial(local, c.addr(), fmt.Sprintf("idle-%d", i), true)
				if err != nil {
					if failed.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				conns[i] = m
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d of %d idle connections failed, the first: %v", failed.Load(), idle, firstErr.Load())
	}
	time.Sleep(2 * time.Second)
	idleRSS := rss(c.pid())
	fmt.Printf("%d idle connections in %s: RSS %s, %.1f KiB per connection\n", idle, time.Since(began).Round(time.Millisecond),
		mb(idleRSS), float64(idleRSS-base)/float64(idle)/1024)

	// The active ones: client i subscribes to scale/i at QoS 1 and
	// publishes to scale/(i+1).
	type activeClient struct {
		m      *mconn
		mu     sync.Mutex
		nextID uint16
		seq    uint64
	}
	var (
		lmu       sync.Mutex
		lat       []time.Duration
		delivered atomic.Int64
		acks      atomic.Int64
	)
	act := make([]*activeClient, o.active)
	for i := range act {
		m, _, err := dial(net.IPv4(127, 0, 1, byte(1+i/25000)), c.addr(), fmt.Sprintf("active-%d", i), true)
		if err != nil {
			return fmt.Errorf("active %d: %w", i, err)
		}
		a := &activeClient{m: m}
		act[i] = a
		subacked := make(chan struct{})
		var once sync.Once
		go m.loop(func(p packet.Packet) {
			switch p.Type {
			case packet.Suback:
				once.Do(func() { close(subacked) })
			case packet.Puback:
				acks.Add(1)
			case packet.Publish:
				if pl := p.Publish.Payload; len(pl) >= 20 {
					sent := int64(binary.BigEndian.Uint64(pl[12:]))
					d := time.Duration(time.Now().UnixNano() - sent)
					lmu.Lock()
					lat = append(lat, d)
					lmu.Unlock()
				}
				delivered.Add(1)
				if p.Publish.QoS > 0 {
					_ = m.send(ack(packet.Puback, p.Publish.PacketID))
				}
			}
		})
		_ = m.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1,
			Subs: []packet.Subscription{{Filter: fmt.Appendf(nil, "scale/%d", i), QoS: 1}}}))
		select {
		case <-subacked:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("active %d: no SUBACK", i)
		}
	}
	fmt.Printf("%d active connections subscribed\n", o.active)

	// Load: every active client publishes rate/active msgs/s, paced in
	// 10 ms ticks, spread over the tick.
	stop := make(chan struct{})
	const tickEvery = 10 * time.Millisecond
	perTick := float64(o.rate) * tickEvery.Seconds()
	var sent atomic.Int64
	wg.Go(func() {
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		carry, k := 0.0, 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			carry += perTick
			n := int(carry)
			carry -= float64(n)
			for range n {
				a := act[k%len(act)]
				to := (k + 1) % len(act)
				k++
				a.mu.Lock()
				a.nextID++
				if a.nextID == 0 {
					a.nextID = 1
				}
				a.seq++
				pk := packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, PacketID: a.nextID,
					Topic: fmt.Appendf(nil, "scale/%d", to), Payload: payloadOf(o.payload, uint32(k), a.seq)})
				a.mu.Unlock()
				if a.m.send(pk) == nil {
					sent.Add(1)
				}
			}
		}
	})
	fmt.Printf("%8s %10s %12s %12s %10s %10s\n", "second", "rss", "sent/s", "delivered/s", "e2e p50", "e2e p99")
	start := time.Now()
	var peak int64
	lastSent, lastDel := int64(0), int64(0)
	tick := time.NewTicker(10 * time.Second)
	for time.Since(start) < o.duration {
		<-tick.C
		lmu.Lock()
		l := lat
		lat = nil
		lmu.Unlock()
		r := rss(c.pid())
		peak = max(peak, r)
		s, d := sent.Load(), delivered.Load()
		fmt.Printf("%8.0f %10s %12.0f %12.0f %10s %10s\n", time.Since(start).Seconds(), mb(r), float64(s-lastSent)/10, float64(d-lastDel)/10,
			percentile(l, 0.5).Round(10*time.Microsecond), percentile(l, 0.99).Round(10*time.Microsecond))
		lastSent, lastDel = s, d
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < sent.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// The idle connections are all still there.
	dead := 0
	for _, m := range conns {
		_ = m.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := m.c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				dead++
			}
		}
	}
	fmt.Printf("\n%d connections: RSS idle %s (%.1f KiB per connection over the %s baseline), peak under load %s; %d sent, %d delivered, %d PUBACKs, %d idle connections dropped\n",
		o.conns, mb(idleRSS), float64(idleRSS-base)/float64(idle)/1024, mb(base), mb(peak), sent.Load(), delivered.Load(), acks.Load(), dead)
	if dead > 0 || delivered.Load() < sent.Load() {
		return fmt.Errorf("%d idle connections dropped, %d of %d messages not delivered", dead, sent.Load()-delivered.Load(), sent.Load())
	}
	return nil
}
