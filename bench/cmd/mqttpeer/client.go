package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/bench/internal/mqttwire"
	"github.com/busbar/busbar/bench/internal/stats"
)

// The load client speaks MQTT 3.1.1 by hand (bench/internal/mqttwire): CONNECT (clean session, no
// keep alive), SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK. Every payload is
// payloadSize bytes: the send time (ns since base, big endian) in bytes
// 0-7 and the publisher's sequence number in bytes 8-15.

const topic = "bench/x"

var base = time.Now()

func nowNS() int64 { return int64(time.Since(base)) }

// dial connects and completes CONNECT/CONNACK with a clean session.
func dial(addr, id string) (net.Conn, error) {
	c, _, err := mqttwire.Dial(addr, id, true)
	return c, err
}

// appendPublish appends one PUBLISH (QoS 0 or 1; id used for QoS 1).
func appendPublish(b []byte, qos byte, id uint16, ts int64, seq uint64) []byte {
	return mqttwire.AppendPublish(b, topic, qos, id, ts, seq, payloadSize)
}

// subscriber reads PUBLISH packets, answers QoS 1 ones with PUBACK,
// counts them, records the highest sequence number seen and the
// publish→delivery latency of those at or after warmSeq.
type subscriber struct {
	c        net.Conn
	count    atomic.Int64
	maxSeq   atomic.Int64
	last     atomic.Int64 // nowNS of the last delivery
	warmSeq  uint64
	hist     stats.Hist
	progress chan struct{}
	done     chan struct{}
	err      error
	closing  atomic.Bool
}

func newSubscriber(addr, id string, qos byte, progress chan struct{}) (*subscriber, error) {
	c, err := dial(addr, id)
	if err != nil {
		return nil, err
	}
	if err := mqttwire.Subscribe(c, topic, qos); err != nil {
		c.Close()
		return nil, err
	}
	s := &subscriber{c: c, progress: progress, done: make(chan struct{})}
	s.maxSeq.Store(-1)
	return s, nil
}

func (s *subscriber) start() { go s.loop() }

func (s *subscriber) loop() {
	defer close(s.done)
	var count, maxSeq int64 = 0, -1
	err := mqttwire.ReadPublishes(s.c, 256<<10, nowNS, func(now, ts int64, seq uint64) {
		count++
		if int64(seq) > maxSeq {
			maxSeq = int64(seq)
		}
		if seq >= s.warmSeq {
			s.hist.Add(now - ts)
		}
	}, func(now int64) {
		s.count.Store(count)
		s.maxSeq.Store(maxSeq)
		s.last.Store(now)
		select {
		case s.progress <- struct{}{}:
		default:
		}
	})
	if !s.closing.Load() || errors.Is(err, mqttwire.ErrTooLarge) {
		s.err = err
	}
}

func (s *subscriber) close() {
	s.closing.Store(true)
	s.c.Close()
	<-s.done
}

// ackReader counts PUBACKs on a QoS 1 publisher's connection.
type ackReader struct {
	c        net.Conn
	acked    atomic.Int64
	progress chan struct{}
	done     chan struct{}
	err      error
	closing  atomic.Bool
}

func newAckReader(c net.Conn, progress chan struct{}) *ackReader {
	a := &ackReader{c: c, progress: progress, done: make(chan struct{})}
	go a.loop()
	return a
}

func (a *ackReader) loop() {
	defer close(a.done)
	var n int64
	err := mqttwire.ReadPubacks(a.c, nowNS, func(int64, uint16) { n++ }, func(int64) {
		a.acked.Store(n)
		select {
		case a.progress <- struct{}{}:
		default:
		}
	})
	if !a.closing.Load() || errors.Is(err, mqttwire.ErrTooLarge) {
		a.err = err
	}
}

func (a *ackReader) close() {
	a.closing.Store(true)
	a.c.Close()
	<-a.done
}

// dialMany opens n idle connections with 32 dialers.
func dialMany(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := dial(addr, fmt.Sprintf("idle-%d", i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	return conns, firstErr
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // no TIME_WAIT pile-up across runs
			}
			c.Close()
		}
	}
}
