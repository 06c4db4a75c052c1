package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/mqtt/packet"
)

// soakState is what the clients saw, across restarts.
type soakState struct {
	mu        sync.Mutex
	acked     []bitset // per publisher: PUBACK received
	delivered []bitset // per publisher: reached the subscriber
	dups      int64
	lat       []time.Duration // PUBACK latencies since the last sample
	ackedN    int64           // PUBACKs in all
	lostSess  int             // reconnects of the subscriber without its session
}

type pending struct {
	seq    uint64
	sentAt time.Time
	pkt    []byte
}

type publisher struct {
	idx     uint32
	o       opts
	st      *soakState
	c       *child
	mu      sync.Mutex
	conn    *mconn
	unacked map[uint16]*pending
	nextID  uint16
	seq     uint64
}

func (p *publisher) connect() {
	for {
		m, _, err := dial(nil, p.c.addr(), fmt.Sprintf("soak-pub-%d", p.idx), true)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.conn = m
		// Resend what was not acknowledged, in order, with DUP.
		ids := make([]uint16, 0, len(p.unacked))
		for id := range p.unacked {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b uint16) int { return int(p.unacked[a].seq - p.unacked[b].seq) })
		var out []byte
		for _, id := range ids {
			pk := p.unacked[id].pkt
			pk[0] |= 0x08
			out = append(out, pk...)
		}
		p.mu.Unlock()
		go func() {
			m.loop(p.onPacket)
			p.lost(m)
		}()
		if len(out) > 0 {
			_ = m.send(out)
		}
		return
	}
}

func (p *publisher) onPacket(pk packet.Packet) {
	if pk.Type != packet.Puback {
		return
	}
	p.mu.Lock()
	pd, ok := p.unacked[pk.Ack.PacketID]
	if ok {
		delete(p.unacked, pk.Ack.PacketID)
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	p.st.mu.Lock()
	p.st.acked[p.idx].set(pd.seq)
	p.st.lat = append(p.st.lat, time.Since(pd.sentAt))
	p.st.ackedN++
	p.st.mu.Unlock()
}

// tick publishes n messages if the window has room.
func (p *publisher) tick(n int) {
	p.mu.Lock()
	m := p.conn
	if m == nil {
		p.mu.Unlock()
		return
	}
	var out []byte
	for range n {
		if len(p.unacked) >= p.o.inflight {
			break
		}
		p.seq++
		for {
			p.nextID++
			if p.nextID == 0 {
				p.nextID = 1
			}
			if _, used := p.unacked[p.nextID]; !used {
				break
			}
		}
		pk := packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, PacketID: p.nextID,
			Topic: fmt.Appendf(nil, "soak/p%d", p.idx), Payload: payloadOf(p.o.payload, p.idx, p.seq)})
		p.unacked[p.nextID] = &pending{seq: p.seq, sentAt: time.Now(), pkt: pk}
		out = append(out, pk...)
	}
	p.mu.Unlock()
	if len(out) > 0 && m.send(out) != nil {
		p.lost(m)
	}
}

// lost notes a broken connection (the broker was killed) and reconnects.
func (p *publisher) lost(m *mconn) {
	p.mu.Lock()
	if p.conn != m {
		p.mu.Unlock()
		return
	}
	p.conn = nil
	p.mu.Unlock()
	m.c.Close()
	p.connect()
}

// subscriber is the persistent session every message goes to.
type subscriber struct {
	st   *soakState
	c    *child
	mu   sync.Mutex
	conn *mconn
}

func (s *subscriber) connect(first bool) {
	for {
		m, present, err := dial(nil, s.c.addr(), "soak-sub", false)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !first && !present {
			s.st.mu.Lock()
			s.st.lostSess++
			s.st.mu.Unlock()
		}
		s.mu.Lock()
		s.conn = m
		s.mu.Unlock()
		done := make(chan struct{})
		go func() {
			m.loop(s.onPacket(m, done))
			s.reconnect(m)
		}()
		if first {
			_ = m.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1,
				Subs: []packet.Subscription{{Filter: []byte("soak/#"), QoS: 1}}}))
			<-done
		}
		return
	}
}

func (s *subscriber) reconnect(m *mconn) {
	s.mu.Lock()
	if s.conn != m {
		s.mu.Unlock()
		return
	}
	s.conn = nil
	s.mu.Unlock()
	m.c.Close()
	s.connect(false)
}

func (s *subscriber) onPacket(m *mconn, subacked chan struct{}) func(packet.Packet) {
	var once sync.Once
	return func(pk packet.Packet) {
		switch pk.Type {
		case packet.Suback:
			once.Do(func() { close(subacked) })
		case packet.Publish:
			pl := pk.Publish.Payload
			if len(pl) >= 12 {
				pub, seq := binary.BigEndian.Uint32(pl), binary.BigEndian.Uint64(pl[4:])
				s.st.mu.Lock()
				if int(pub) < len(s.st.delivered) && s.st.delivered[pub].set(seq) {
					s.st.dups++
				}
				s.st.mu.Unlock()
			}
			if pk.Publish.QoS > 0 {
				_ = m.send(ack(packet.Puback, pk.Publish.PacketID))
			}
		}
	}
}

func runSoak(o opts) error {
	tmp, err := os.MkdirTemp(o.dir, "busbar-soak-")
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
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nmqtt { listen: 127.0.0.1:%d }\n", freePort(), port), 0o644); err != nil {
		return err
	}
	c := &child{bin: bin, conf: conf, storeDir: filepath.Join(tmp, "store"), port: port, logs: logs}
	if err := c.start(); err != nil {
		return err
	}
	defer c.kill()
	st := &soakState{acked: make([]bitset, o.publishers), delivered: make([]bitset, o.publishers)}
	sub := &subscriber{st: st, c: c}
	sub.connect(true)
	pubs := make([]*publisher, o.publishers)
	for i := range pubs {
		pubs[i] = &publisher{idx: uint32(i), o: o, st: st, c: c, unacked: map[uint16]*pending{}}
		pubs[i].connect()
	}
	fmt.Printf("soak %s  %d CPUs  %s of %d QoS 1 msgs/s (%d B) from %d publishers to 1 persistent subscriber, file store in %s, %d SIGKILLs\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), o.duration, o.rate, o.payload, o.publishers, o.dir, o.kills)
	fmt.Printf("%8s %10s %10s %10s %10s %12s %6s\n", "minute", "rss", "disk", "ack p50", "ack p99", "acked/s", "kills")

	start := time.Now()
	var kills atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Killer: one SIGKILL at a random moment of each slot.
	wg.Go(func() {
		slot := o.duration / time.Duration(max(o.kills, 1))
		for k := range o.kills {
			at := start.Add(slot*time.Duration(k) + time.Duration((0.2+0.6*rand.Float64())*float64(slot)))
			select {
			case <-stop:
				return
			case <-time.After(time.Until(at)):
			}
			c.kill()
			kills.Add(1)
			if err := c.start(); err != nil {
				fmt.Fprintln(os.Stderr, "restart:", err)
			}
		}
	})
	// Publishers: paced in 5 ms ticks.
	const tickEvery = 5 * time.Millisecond
	perTick := float64(o.rate) / float64(o.publishers) * tickEvery.Seconds()
	for _, p := range pubs {
		wg.Go(func() {
			t := time.NewTicker(tickEvery)
			defer t.Stop()
			carry := 0.0
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				carry += perTick
				n := int(carry)
				carry -= float64(n)
				p.tick(n)
			}
		})
	}
	// Samples.
	var samples []int64
	lastAcked := int64(0)
	sampleT := time.NewTicker(o.sample)
	end := time.After(o.duration)
	for running := true; running; {
		select {
		case <-end:
			running = false
		case <-sampleT.C:
			st.mu.Lock()
			lat := st.lat
			st.lat = nil
			acked := st.ackedN
			st.mu.Unlock()
			r := rss(c.pid())
			samples = append(samples, r)
			fmt.Printf("%8.0f %10s %10s %10s %10s %12.0f %6d\n", time.Since(start).Minutes(), mb(r), mb(dirSize(c.storeDir)),
				percentile(lat, 0.5).Round(10*time.Microsecond), percentile(lat, 0.99).Round(10*time.Microsecond),
				float64(acked-lastAcked)/o.sample.Seconds(), kills.Load())
			lastAcked = acked
		}
	}
	sampleT.Stop()
	close(stop)
	wg.Wait()
	// Drain: everything acknowledged reaches the subscriber.
	deadline := time.Now().Add(2 * time.Minute)
	var lost, outstanding int64
	for {
		outstanding = 0
		for _, p := range pubs {
			p.mu.Lock()
			outstanding += int64(len(p.unacked))
			p.mu.Unlock()
		}
		lost = 0
		st.mu.Lock()
		for i := range st.acked {
			for w, bits := range st.acked[i].w {
				for b := range 64 {
					if bits&(1<<b) != 0 && !st.delivered[i].has(uint64(w*64+b)) {
						lost++
					}
				}
			}
		}
		st.mu.Unlock()
		if outstanding == 0 && lost == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	fmt.Printf("\n%d SIGKILLs, %d messages acknowledged, %d lost (acknowledged, never delivered), %d delivered twice (QoS 1 allows it), %d unacknowledged at the end, subscriber session lost %d times\n",
		kills.Load(), st.ackedN, lost, st.dups, outstanding, st.lostSess)
	if n := len(samples); n >= 6 {
		third := n / 3
		avg := func(s []int64) int64 {
			var t int64
			for _, v := range s {
				t += v
			}
			return t / int64(len(s))
		}
		fmt.Printf("RSS: first third %s, last third %s (samples %d)\n", mb(avg(samples[:third])), mb(avg(samples[n-third:])), n)
	}
	if lost > 0 || st.lostSess > 0 {
		return fmt.Errorf("%d acknowledged messages lost, session lost %d times; busbar log: %s", lost, st.lostSess, logs.Name())
	}
	return nil
}
