package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/busbar/busbar/bench/internal/stats"
)

const payloadSize = 64

type config struct {
	duration    time.Duration // publishing time of a throughput run
	window      int64         // QoS 0/1 messages in flight toward the slowest subscriber
	inflight    int64         // QoS 1 publisher: outstanding PUBACKs
	fanout      int           // subscribers of fanout16
	rate        int           // paced messages/s
	pacedDur    time.Duration // publishing time of a paced run
	conns       int           // idle connections
	timeout     time.Duration // a run fails after this long without progress
	drain       time.Duration // after publishing, how long without progress counts as loss
	settleIdle  time.Duration // wait before reading RSS after the last idle connection
	batch       int           // messages per write of a throughput publisher
	pacedWarmup float64       // fraction of paced messages left out of latency
}

// result is one run's figures, by metric key.
type result map[string]float64

const (
	mRate   = "msgs/s"
	mP50    = "p50 µs"
	mP99    = "p99 µs"
	mCPU    = "cpu µs/msg"
	mLost   = "lost"
	mKiB    = "KiB/conn"
	mStart  = "MiB start"
	mConnPS = "conns/s"
)

var errStall = errors.New("no progress")

// throughput publishes 64-byte messages from one publisher at QoS qos for
// cfg.duration to nsubs subscribers of the same topic, as fast as the
// windows allow, and measures deliveries.
func throughput(b *broker, cfg config, qos byte, nsubs int) (result, error) {
	progress := make(chan struct{}, 1)
	subs := make([]*subscriber, 0, nsubs)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	for i := range nsubs {
		s, err := newSubscriber(b.addr, fmt.Sprintf("sub-%d", i), qos, progress)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		subs = append(subs, s)
		s.start()
	}
	pub, err := dial(b.addr, "pub")
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	var acks *ackReader
	if qos == 1 {
		acks = newAckReader(pub, progress)
		defer acks.close()
	} else {
		defer pub.Close()
	}
	// The publisher writes only when a whole batch fits in the windows, so
	// that a nearly full window does not turn into a stream of tiny writes
	// (the broker would then pay one read per message).
	batch := min(int64(cfg.batch), max(cfg.window/4, 1))
	if qos == 1 {
		batch = min(batch, max(cfg.inflight/4, 1))
	}
	buf := make([]byte, 0, int(batch)*(4+2+len(topic)+2+payloadSize))
	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	var seq int64
	c0, t0 := b.cpu(), nowNS()
	deadline := time.Now().Add(cfg.duration)
	for time.Now().Before(deadline) {
		var k int64
		for {
			seen := int64(1 << 62)
			for _, s := range subs {
				seen = min(seen, s.maxSeq.Load())
			}
			k = min(batch, cfg.window-(seq-1-seen))
			if acks != nil {
				k = min(k, cfg.inflight-(seq-acks.acked.Load()))
			}
			if k >= batch {
				k = batch
				break
			}
			timer.Reset(cfg.timeout)
			select {
			case <-progress:
			case <-timer.C:
				return nil, fmt.Errorf("publisher stalled at message %d: %w", seq, errStall)
			}
		}
		ts := nowNS()
		buf = buf[:0]
		for range k {
			buf = appendPublish(buf, qos, uint16(seq%65535)+1, ts, uint64(seq))
			seq++
		}
		_ = pub.SetWriteDeadline(time.Now().Add(cfg.timeout))
		if _, err := pub.Write(buf); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	sent := seq
	waitDone(cfg, func() (int64, bool) {
		var total int64
		all := true
		for _, s := range subs {
			n := s.count.Load()
			total += n
			all = all && n >= sent
		}
		if acks != nil {
			n := acks.acked.Load()
			total += n
			all = all && n >= sent
		}
		return total, all
	})
	c1 := b.cpu()
	var delivered, end int64
	for _, s := range subs {
		delivered += s.count.Load()
		end = max(end, s.last.Load())
	}
	for _, s := range subs {
		s.close()
	}
	var h stats.Hist
	for _, s := range subs {
		if s.err != nil {
			return nil, fmt.Errorf("subscriber: %w", s.err)
		}
		h.Merge(&s.hist)
	}
	subs = nil
	if acks != nil && acks.err != nil {
		return nil, fmt.Errorf("publisher: %w", acks.err)
	}
	if delivered == 0 {
		return nil, errors.New("nothing delivered")
	}
	return result{
		mRate: float64(delivered) / (float64(end-t0) / 1e9),
		mP50:  h.Quantile(0.50) / 1e3,
		mP99:  h.Quantile(0.99) / 1e3,
		mCPU:  float64(c1-c0) / 1e3 / float64(delivered),
		mLost: float64(sent*int64(nsubs) - delivered),
	}, nil
}

// waitDone polls until state says all is done or its total has not moved
// for cfg.drain.
func waitDone(cfg config, state func() (int64, bool)) {
	last, moved := int64(-1), time.Now()
	for {
		total, all := state()
		if all {
			return
		}
		if total != last {
			last, moved = total, time.Now()
		} else if time.Since(moved) > cfg.drain {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// paced publishes one message at a time at cfg.rate for cfg.pacedDur, at
// QoS qos, to one subscriber, and measures publish→delivery latency.
func paced(b *broker, cfg config, qos byte) (result, error) {
	progress := make(chan struct{}, 1)
	total := int64(float64(cfg.rate) * cfg.pacedDur.Seconds())
	if total < 100 {
		return nil, fmt.Errorf("rate × duration gives only %d messages", total)
	}
	s, err := newSubscriber(b.addr, "sub", qos, progress)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	s.warmSeq = uint64(float64(total) * cfg.pacedWarmup)
	s.start()
	closeSub := func() {
		if s != nil {
			s.close()
		}
	}
	defer func() { closeSub() }()
	pub, err := dial(b.addr, "pub")
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	if tc, ok := pub.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	var acks *ackReader
	if qos == 1 {
		acks = newAckReader(pub, progress)
		defer acks.close()
	} else {
		defer pub.Close()
	}
	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	interval := time.Second / time.Duration(cfg.rate)
	buf := make([]byte, 0, 128)
	c0 := b.cpu()
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		// At 5,000/s the PUBACK window fills only when the machine stalls;
		// then wait (the late messages' latency shows the stall).
		for acks != nil && i-acks.acked.Load() >= cfg.inflight {
			timer.Reset(cfg.timeout)
			select {
			case <-progress:
			case <-timer.C:
				return nil, fmt.Errorf("%d PUBACKs outstanding for %v: %w", cfg.inflight, cfg.timeout, errStall)
			}
		}
		buf = appendPublish(buf[:0], qos, uint16(i%65535)+1, nowNS(), uint64(i))
		_ = pub.SetWriteDeadline(time.Now().Add(cfg.timeout))
		if _, err := pub.Write(buf); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	waitDone(cfg, func() (int64, bool) {
		n := s.count.Load()
		all := n >= total
		if acks != nil {
			a := acks.acked.Load()
			n += a
			all = all && a >= total
		}
		return n, all
	})
	c1 := b.cpu()
	delivered := s.count.Load()
	s.close()
	sub := s
	s = nil
	if sub.err != nil {
		return nil, fmt.Errorf("subscriber: %w", sub.err)
	}
	if acks != nil && acks.err != nil {
		return nil, fmt.Errorf("publisher: %w", acks.err)
	}
	if delivered == 0 {
		return nil, errors.New("nothing delivered")
	}
	return result{
		mP50:  sub.hist.Quantile(0.50) / 1e3,
		mP99:  sub.hist.Quantile(0.99) / 1e3,
		mCPU:  float64(c1-c0) / 1e3 / float64(delivered),
		mLost: float64(total - delivered),
	}, nil
}

// idle opens cfg.conns idle connections to a fresh broker and measures
// resident memory growth per connection.
func idle(b *broker, cfg config) (result, error) {
	before := b.rss()
	t0 := time.Now()
	conns, err := dialMany(b.addr, cfg.conns)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	el := time.Since(t0)
	time.Sleep(cfg.settleIdle)
	if !b.alive() {
		return nil, errors.New("broker exited")
	}
	after := b.rss()
	return result{
		mKiB:    float64(after-before) / float64(cfg.conns),
		mStart:  float64(before) / 1024,
		mConnPS: float64(cfg.conns) / el.Seconds(),
	}, nil
}
