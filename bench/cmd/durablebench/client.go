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
	r := mqttwire.NewReader(s.c, 256<<10)
	acks := make([]byte, 0, 4096)
	var count, dups, maxSeq int64 = 0, 0, -1
	for {
		if err := r.Read(); err != nil {
			if !s.closing.Load() || errors.Is(err, mqttwire.ErrTooLarge) {
				s.err = err
			}
			return
		}
		now := nowNS()
		for {
			h, body, ok := r.Next()
			if !ok {
				break
			}
			if h>>4 != 3 {
				continue // not a PUBLISH
			}
			qos, id, payload, ok := mqttwire.ParsePublish(h, body)
			if !ok {
				continue
			}
			if qos > 0 {
				acks = mqttwire.AppendPuback(acks, id)
			}
			ts, seq, ok := mqttwire.Stamp(payload)
			if !ok {
				continue
			}
			w := int(seq / 64)
			for w >= len(s.seen) {
				s.seen = append(s.seen, make([]uint64, len(s.seen)+1024)...)
			}
			if s.seen[w]&(1<<(seq%64)) != 0 {
				dups++
				continue
			}
			s.seen[w] |= 1 << (seq % 64)
			count++
			if int64(seq) > maxSeq {
				maxSeq = int64(seq)
			}
			if seq >= s.warmSeq {
				s.hist.Add(now - ts)
			}
		}
		if len(acks) > 0 {
			if _, err := s.c.Write(acks); err != nil {
				if !s.closing.Load() {
					s.err = err
				}
				return
			}
			acks = acks[:0]
		}
		s.count.Store(count)
		s.dups.Store(dups)
		s.maxSeq.Store(maxSeq)
		s.last.Store(now)
		select {
		case s.progress <- struct{}{}:
		default:
		}
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
	r := mqttwire.NewReader(a.c, 64<<10)
	var n int64
	for {
		if err := r.Read(); err != nil {
			if !a.closing.Load() || errors.Is(err, mqttwire.ErrTooLarge) {
				a.err = err
			}
			return
		}
		now := nowNS()
		for {
			h, body, ok := r.Next()
			if !ok {
				break
			}
			if h>>4 != 4 || len(body) != 2 {
				continue // not a PUBACK
			}
			n++
			rec := &a.sent[int(body[0])<<8|int(body[1])]
			if seq := rec.seq.Load(); seq >= int64(a.warmSeq) {
				a.hist.Add(now - rec.ts.Load())
			}
		}
		a.acked.Store(n)
		a.last.Store(now)
		select {
		case a.progress <- struct{}{}:
		default:
		}
	}
}

func (a *ackReader) close() {
	a.closing.Store(true)
	mqttwire.Disconnect(a.c)
	<-a.done
}
