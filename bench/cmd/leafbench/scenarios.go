package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/bench/internal/errlist"
	"github.com/nats-io/nats.go"
)

// Metric names.
const (
	mRate    = "msgs/s"
	mMBps    = "MB/s"
	mLeafCPU = "leaf cpu µs/msg" // leaf A + leaf B
	mHubCPU  = "hub cpu µs/msg"
	mP50     = "p50 µs"
	mP99     = "p99 µs"
	mLeafReq = "leaf cpu µs/req"
	mGap     = "gap ms"
	mLost    = "lost msgs"
)

var higherBetter = map[string]bool{mRate: true, mMBps: true}

// config is what the scenarios read from the flags.
type config struct {
	count       int           // messages per throughput run (upper bound)
	maxDur      time.Duration // publishing time limit of a throughput run
	window      int           // credit window in bytes
	requests    int           // measured requests of the round-trip run
	rrSize      int
	rate        int           // messages/s of the failover run
	killAfter   time.Duration // failover: time from the first delivery to SIGKILL of hub1
	tail        time.Duration // failover: publishing time after the kill
	timeout     time.Duration // no-progress limit
	interestMax time.Duration // limit for interest to cross the hub
}

// topo is the two leaves of one kind and the hub(s) they hang off.
type topo struct {
	hubs []*hub
	a, b *leafNode
}

func (t *topo) hubCPU() time.Duration {
	var d time.Duration
	for _, h := range t.hubs {
		if h.alive() {
			d += h.cpuTime()
		}
	}
	return d
}

func (t *topo) leafCPU() time.Duration { return t.a.cpuTime() + t.b.cpuTime() }

// clients holds the nats.go connections of one run.
type clients struct {
	el    errlist.List
	conns []*nats.Conn
}

func (c *clients) connect(url, name string, timeout time.Duration) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(timeout),
		nats.FlusherTimeout(timeout),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			c.el.Add("%s: async error: %v", name, err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.el.Add("%s: disconnected: %v", name, err)
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("%s: connect %s: %w", name, url, err)
	}
	c.conns = append(c.conns, nc)
	return nc, nil
}

func (c *clients) close() {
	for _, nc := range c.conns {
		nc.Close()
	}
}

// crossed publishes probe messages on subj from pub until one reaches
// got (interest has crossed hub and leaves), then waits a little for
// stragglers.
func crossed(pub *nats.Conn, subj string, got *atomic.Int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for got.Load() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("interest on %s did not cross the hub in %v", subj, limit)
		}
		if err := pub.Publish(subj, []byte("probe")); err != nil {
			return err
		}
		if err := pub.Flush(); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return nil
}

// runThroughput publishes size-byte messages on leaf A (at most
// cfg.count, at most cfg.maxDur) and counts them at a subscriber on
// leaf B. The publisher holds while more than cfg.window bytes are
// published but not yet received, so no buffer on the path grows toward
// a slow-consumer limit.
func runThroughput(t *topo, cfg *config, size int) (map[string]float64, error) {
	var cl clients
	defer cl.close()
	subj := fmt.Sprintf("bench.tp.%d", time.Now().UnixNano())
	sc, err := cl.connect(t.b.url(), "sub@B", cfg.timeout)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	var n, probes atomic.Int64
	var first, last atomic.Int64
	sub, err := sc.Subscribe(subj, func(m *nats.Msg) {
		if len(m.Data) != size {
			probes.Add(1)
			return
		}
		now := int64(time.Since(base))
		if n.Add(1) == 1 {
			first.Store(now)
		}
		last.Store(now)
	})
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := sc.Flush(); err != nil {
		return nil, err
	}
	pc, err := cl.connect(t.a.url(), "pub@A", cfg.timeout)
	if err != nil {
		return nil, err
	}
	if err := crossed(pc, subj, &probes, cfg.interestMax); err != nil {
		return nil, err
	}

	window := int64(max(1000, cfg.window/(size+40)))
	batch := int64(min(max(16, 64<<10/(size+40)), 1024))
	payload := make([]byte, size)
	leaf0, hub0 := t.leafCPU(), t.hubCPU()
	deadline := time.Now().Add(cfg.maxDur)
	var published int64
	for published < int64(cfg.count) && time.Now().Before(deadline) {
		for k := int64(0); k < batch; k++ {
			if err := pc.Publish(subj, payload); err != nil {
				return nil, err
			}
		}
		published += batch
		stall := time.Now()
		for published-n.Load() > window {
			if time.Since(stall) > cfg.timeout {
				return nil, errors.Join(fmt.Errorf("no delivery progress for %v (%d published, %d received)", cfg.timeout, published, n.Load()), cl.el.Err())
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	if err := pc.Flush(); err != nil {
		return nil, err
	}
	lastProgress, lastGot := time.Now(), int64(-1)
	for n.Load() < published {
		if got := n.Load(); got != lastGot {
			lastGot, lastProgress = got, time.Now()
		} else if time.Since(lastProgress) > cfg.timeout {
			return nil, errors.Join(fmt.Errorf("received %d of %d; nothing more for %v", got, published, cfg.timeout), cl.el.Err())
		}
		time.Sleep(time.Millisecond)
	}
	leaf1, hub1 := t.leafCPU(), t.hubCPU()
	if err := cl.el.Err(); err != nil {
		return nil, err
	}
	got := n.Load()
	span := time.Duration(last.Load() - first.Load()).Seconds()
	if span <= 0 || got < 2 {
		return nil, fmt.Errorf("too few messages delivered (%d)", got)
	}
	rate := float64(got) / span
	return map[string]float64{
		mRate:    rate,
		mMBps:    rate * float64(size) / 1e6,
		mLeafCPU: (leaf1 - leaf0).Seconds() * 1e6 / float64(got),
		mHubCPU:  (hub1 - hub0).Seconds() * 1e6 / float64(got),
	}, nil
}

// runRoundTrip sends cfg.requests sequential requests from leaf A to a
// responder on leaf B (after a warm-up) and reports the percentiles of
// the round trip.
func runRoundTrip(t *topo, cfg *config) (map[string]float64, error) {
	var cl clients
	defer cl.close()
	rc, err := cl.connect(t.b.url(), "responder@B", cfg.timeout)
	if err != nil {
		return nil, err
	}
	subj := fmt.Sprintf("bench.rr.%d", time.Now().UnixNano())
	if _, err := rc.Subscribe(subj, func(m *nats.Msg) {
		if err := m.Respond(m.Data); err != nil {
			cl.el.Add("respond: %v", err)
		}
	}); err != nil {
		return nil, err
	}
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	qc, err := cl.connect(t.a.url(), "requester@A", cfg.timeout)
	if err != nil {
		return nil, err
	}
	// Warm-up: the first requests wait for interest in both directions
	// (the subject and the requester's reply inbox).
	deadline := time.Now().Add(cfg.interestMax)
	for ok := 0; ok < 200; {
		if _, err := qc.Request(subj, []byte("warmup"), 200*time.Millisecond); err != nil {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("warm-up request: %w", err)
			}
			continue
		}
		ok++
	}
	payload := make([]byte, cfg.rrSize)
	lats := make([]time.Duration, 0, cfg.requests)
	leaf0 := t.leafCPU()
	for i := 0; i < cfg.requests; i++ {
		t0 := time.Now()
		if _, err := qc.Request(subj, payload, cfg.timeout); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		lats = append(lats, time.Since(t0))
	}
	leaf1 := t.leafCPU()
	if err := cl.el.Err(); err != nil {
		return nil, err
	}
	slices.Sort(lats)
	at := func(p float64) float64 {
		return float64(lats[min(int(p*float64(len(lats))), len(lats)-1)]) / float64(time.Microsecond)
	}
	return map[string]float64{
		mP50:     at(0.50),
		mP99:     at(0.99),
		mLeafReq: (leaf1 - leaf0).Seconds() * 1e6 / float64(len(lats)),
	}, nil
}

// runFailover paces messages from leaf A (attached to hubs[0]) to a
// subscriber on leaf B (attached to hubs[1]), SIGKILLs hubs[0] once the
// flow is steady, and reports the longest interval without a delivery
// and how many messages were lost.
func runFailover(t *topo, cfg *config) (map[string]float64, error) {
	var cl clients
	defer cl.close()
	subj := fmt.Sprintf("bench.fo.%d", time.Now().UnixNano())
	sc, err := cl.connect(t.b.url(), "sub@B", cfg.timeout)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	var n, probes, maxGap, last atomic.Int64 // last: ns since base
	if _, err := sc.Subscribe(subj, func(m *nats.Msg) {
		if len(m.Data) != 16 {
			probes.Add(1)
			return
		}
		now := int64(time.Since(base))
		if l := last.Load(); l != 0 && now-l > maxGap.Load() {
			maxGap.Store(now - l)
		}
		last.Store(now)
		n.Add(1)
	}); err != nil {
		return nil, err
	}
	if err := sc.Flush(); err != nil {
		return nil, err
	}
	pc, err := cl.connect(t.a.url(), "pub@A", cfg.timeout)
	if err != nil {
		return nil, err
	}
	if err := crossed(pc, subj, &probes, cfg.interestMax); err != nil {
		return nil, err
	}

	interval := time.Second / time.Duration(cfg.rate)
	payload := make([]byte, 16)
	start := time.Now()
	var sent int
	var killedAt time.Time
	for {
		now := time.Now()
		if killedAt.IsZero() && now.Sub(start) >= cfg.killAfter {
			if n.Load() == 0 {
				return nil, errors.New("no message delivered before the kill")
			}
			t.hubs[0].kill()
			killedAt = time.Now()
		}
		if !killedAt.IsZero() && now.Sub(killedAt) >= cfg.tail {
			break
		}
		for due := int(now.Sub(start) / interval); sent <= due; sent++ {
			binary.LittleEndian.PutUint64(payload, uint64(sent))
			if err := pc.Publish(subj, payload); err != nil {
				return nil, err
			}
		}
		time.Sleep(time.Until(start.Add(time.Duration(sent) * interval)))
	}
	if err := pc.Flush(); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond)
	if err := cl.el.Err(); err != nil {
		return nil, err
	}
	got := n.Load()
	gap := time.Duration(maxGap.Load())
	if time.Duration(last.Load()) < killedAt.Sub(base) {
		return nil, fmt.Errorf("no delivery after the kill within %v (%d of %d delivered)", cfg.tail, got, sent)
	}
	return map[string]float64{
		mGap:  float64(gap) / float64(time.Millisecond),
		mLost: float64(int64(sent) - got),
	}, nil
}
