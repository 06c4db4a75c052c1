package main

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/bench/internal/mqttwire"
	"github.com/busbar/busbar/bench/internal/stats"
)

// The load client speaks MQTT 3.1.1 by hand (bench/internal/mqttwire, as
// bench/cmd/mqttpeer's): CONNECT (clean session or not, no keep alive),
// SUBSCRIBE, PUBLISH at QoS 1, PUBACK, DISCONNECT. Every payload is
// payloadSize bytes: the send time (ns since base, big endian) in bytes
// 0-7 and the publisher's sequence number in bytes 8-15.

const topic = "bench/durable"

var base = time.Now()

func nowNS() int64 { return int64(time.Since(base)) }

// dial connects and completes CONNECT/CONNACK; present is the CONNACK's
// session present flag.
func dial(addr, id string, clean bool) (net.Conn, bool, error) { return mqttwire.Dial(addr, id, clean) }

// subscribe sends SUBSCRIBE for topic at QoS 1 and waits for the SUBACK.
func subscribe(c net.Conn) error { return mqttwire.Subscribe(c, topic, 1) }

// appendPublish appends one QoS 1 PUBLISH.
func appendPublish(b []byte, id uint16, ts int64, seq uint64) []byte {
	return mqttwire.AppendPublish(b, topic, 1, id, ts, seq, payloadSize)
}

// subscriber reads PUBLISH packets on a persistent session, answers each
// QoS 1 one with PUBACK (after the read that brought it), counts distinct
// and repeated sequence numbers and records the publish→delivery latency
// of those at or after warmSeq.
type subscriber struct {
	c        net.Conn
	count    atomic.Int64 // distinct messages
	dups     atomic.Int64 // messages seen again
	maxSeq   atomic.Int64
	last     atomic.Int64 // nowNS of the last delivery
	warmSeq  uint64
	hist     stats.Hist
	seen     []uint64 // bitset of sequence numbers
	progress chan struct{}
	done     chan struct{}
	err      error
	closing  atomic.Bool
}

func (s *subscriber) start() {
	s.maxSeq.Store(-1)
	s.done = make(chan struct{})
	go s.loop()
}

func (s *subscriber) loop() {
	defer close(s.done)
	var count, dups, maxSeq int64 = 0, 0, -1
	err := mqttwire.ReadPublishes(s.c, 256<<10, nowNS, func(now, ts int64, seq uint64) {
		w := int(seq / 64)
		for w >= len(s.seen) {
			s.seen = append(s.seen, make([]uint64, len(s.seen)+1024)...)
		}
		if s.seen[w]&(1<<(seq%64)) != 0 {
			dups++
			return
		}
		s.seen[w] |= 1 << (seq % 64)
		count++
		if int64(seq) > maxSeq {
			maxSeq = int64(seq)
		}
		if seq >= s.warmSeq {
			s.hist.Add(now - ts)
		}
	}, func(now int64) {
		s.count.Store(count)
		s.dups.Store(dups)
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
	mqttwire.Disconnect(s.c)
	<-s.done
}

// ackReader reads the publisher's PUBACKs, counts them and records the
// publish→PUBACK latency of messages at or after warmSeq (the send time
// and sequence number of each in-flight packet identifier are in sent).
type ackReader struct {
	c        net.Conn
	acked    atomic.Int64
	sent     *[65536]sentRec
	warmSeq  uint64
	hist     stats.Hist
	last     atomic.Int64 // nowNS of the last PUBACK
	progress chan struct{}
	done     chan struct{}
	err      error
	closing  atomic.Bool
}

type sentRec struct{ ts, seq atomic.Int64 }

func (a *ackReader) start() {
	a.done = make(chan struct{})
	go a.loop()
}

func (a *ackReader) loop() {
	defer close(a.done)
	var n int64
	err := mqttwire.ReadPubacks(a.c, nowNS, func(now int64, id uint16) {
		n++
		rec := &a.sent[id]
		if seq := rec.seq.Load(); seq >= int64(a.warmSeq) {
			a.hist.Add(now - rec.ts.Load())
		}
	}, func(now int64) {
		a.acked.Store(n)
		a.last.Store(now)
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
	mqttwire.Disconnect(a.c)
	<-a.done
}
