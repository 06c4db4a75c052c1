package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync/atomic"
	"time"
)

// The load client speaks MQTT 3.1.1 by hand (as bench/cmd/mqttpeer's):
// CONNECT (clean session or not, no keep alive), SUBSCRIBE, PUBLISH at
// QoS 1, PUBACK, DISCONNECT. Every payload is payloadSize bytes: the send
// time (ns since base, big endian) in bytes 0-7 and the publisher's
// sequence number in bytes 8-15.

const topic = "bench/durable"

var base = time.Now()

func nowNS() int64 { return int64(time.Since(base)) }

func mqttStr(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func varint(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// dial connects and completes CONNECT/CONNACK; present is the CONNACK's
// session present flag.
func dial(addr, id string, clean bool) (c net.Conn, present bool, err error) {
	c, err = net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, false, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 0} // keep alive 0
	body = mqttStr(body, id)
	pkt := varint([]byte{0x10}, len(body))
	if _, err := c.Write(append(pkt, body...)); err != nil {
		c.Close()
		return nil, false, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, false, fmt.Errorf("connack: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		c.Close()
		return nil, false, fmt.Errorf("connack % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, ack[2]&1 == 1, nil
}

// subscribe sends SUBSCRIBE for topic at QoS 1 and waits for the SUBACK.
func subscribe(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	body := mqttStr([]byte{0, 1}, topic)
	body = append(body, 1)
	pkt := varint([]byte{0x82}, len(body))
	if _, err := c.Write(append(pkt, body...)); err != nil {
		return err
	}
	ack := make([]byte, 5)
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("suback: %w", err)
	}
	if ack[0] != 0x90 || ack[4] != 1 {
		return fmt.Errorf("suback % x", ack)
	}
	return nil
}

// disconnect sends DISCONNECT and closes the connection.
func disconnect(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{0xe0, 0})
	c.Close()
}

// appendPublish appends one QoS 1 PUBLISH.
func appendPublish(b []byte, id uint16, ts int64, seq uint64) []byte {
	b = varint(append(b, 0x32), 2+len(topic)+2+payloadSize)
	b = mqttStr(b, topic)
	b = append(b, byte(id>>8), byte(id))
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, zeros[:payloadSize-16]...)
}

// hist is a log-linear latency histogram in ns: 64 sub-buckets per power
// of two (relative error under 1.6%).
type hist struct {
	b [4096]int64
	n int64
}

func (h *hist) add(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	idx := int(u)
	if u >= 128 {
		shift := bits.Len64(u) - 7
		idx = 64 + shift*64 + int(u>>shift) - 64
	}
	if idx >= len(h.b) {
		idx = len(h.b) - 1
	}
	h.b[idx]++
	h.n++
}

// quantile returns the q-quantile in ms (bucket midpoint).
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	target := int64(q*float64(h.n-1)) + 1
	var acc int64
	for i, c := range h.b {
		acc += c
		if acc >= target {
			if i < 128 {
				return float64(i) / 1e6
			}
			shift := (i - 64) / 64
			lo := uint64((i-64)%64+64) << shift
			return (float64(lo) + float64(uint64(1)<<shift)/2) / 1e6
		}
	}
	return 0
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
	hist     hist
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
	buf := make([]byte, 256<<10)
	acks := make([]byte, 0, 4096)
	have := 0
	var count, dups, maxSeq int64 = 0, 0, -1
	for {
		k, err := s.c.Read(buf[have:])
		if err != nil {
			if !s.closing.Load() {
				s.err = err
			}
			return
		}
		now := nowNS()
		have += k
		p := 0
		for {
			if have-p < 2 {
				break
			}
			rem, mul, i := 0, 1, p+1
			ok := false
			for ; i < have && i < p+5; i++ {
				rem += int(buf[i]&0x7f) * mul
				mul <<= 7
				if buf[i]&0x80 == 0 {
					ok = true
					i++
					break
				}
			}
			if !ok || have-i < rem {
				break
			}
			h := buf[p]
			body := buf[i : i+rem]
			p = i + rem
			if h>>4 != 3 {
				continue // not a PUBLISH
			}
			tl := int(body[0])<<8 | int(body[1])
			q := body[2+tl:]
			if (h>>1)&3 > 0 {
				acks = append(acks, 0x40, 2, q[0], q[1])
				q = q[2:]
			}
			if len(q) < 16 {
				continue
			}
			ts := int64(binary.BigEndian.Uint64(q))
			seq := binary.BigEndian.Uint64(q[8:])
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
				s.hist.add(now - ts)
			}
		}
		if p > 0 {
			have = copy(buf, buf[p:have])
		}
		if have == len(buf) {
			s.err = errors.New("packet larger than read buffer")
			return
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
	disconnect(s.c)
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
	hist     hist
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
	buf := make([]byte, 64<<10)
	have := 0
	var n int64
	for {
		k, err := a.c.Read(buf[have:])
		if err != nil {
			if !a.closing.Load() {
				a.err = err
			}
			return
		}
		now := nowNS()
		have += k
		p := 0
		for have-p >= 2 {
			rem := int(buf[p+1]) // every packet we expect here is short
			if buf[p+1]&0x80 != 0 {
				a.err = fmt.Errorf("unexpected packet % x on publisher", buf[p:p+2])
				return
			}
			if have-p < 2+rem {
				break
			}
			if buf[p]>>4 == 4 && rem == 2 {
				n++
				r := &a.sent[int(buf[p+2])<<8|int(buf[p+3])]
				if seq := r.seq.Load(); seq >= int64(a.warmSeq) {
					a.hist.add(now - r.ts.Load())
				}
			}
			p += 2 + rem
		}
		have = copy(buf, buf[p:have])
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
	disconnect(a.c)
	<-a.done
}
