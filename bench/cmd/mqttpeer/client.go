package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The load client speaks MQTT 3.1.1 by hand: CONNECT (clean session, no
// keep alive), SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK. Every payload is
// payloadSize bytes: the send time (ns since base, big endian) in bytes
// 0-7 and the publisher's sequence number in bytes 8-15.

const topic = "bench/x"

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

// dial connects and completes CONNECT/CONNACK.
func dial(addr, id string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0} // clean session, keep alive 0
	body = mqttStr(body, id)
	pkt := varint([]byte{0x10}, len(body))
	if _, err := c.Write(append(pkt, body...)); err != nil {
		c.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("connack % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// subscribe sends SUBSCRIBE for topic at qos and waits for the SUBACK.
func subscribe(c net.Conn, qos byte) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	body := mqttStr([]byte{0, 1}, topic)
	body = append(body, qos)
	pkt := varint([]byte{0x82}, len(body))
	if _, err := c.Write(append(pkt, body...)); err != nil {
		return err
	}
	ack := make([]byte, 5)
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("suback: %w", err)
	}
	if ack[0] != 0x90 || ack[4] != qos {
		return fmt.Errorf("suback % x", ack)
	}
	return nil
}

// appendPublish appends one PUBLISH (QoS 0 or 1; id used for QoS 1).
func appendPublish(b []byte, qos byte, id uint16, ts int64, seq uint64) []byte {
	rem := 2 + len(topic) + payloadSize
	h := byte(0x30)
	if qos == 1 {
		rem += 2
		h = 0x32
	}
	b = varint(append(b, h), rem)
	b = mqttStr(b, topic)
	if qos == 1 {
		b = append(b, byte(id>>8), byte(id))
	}
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

func (h *hist) merge(o *hist) {
	for i, c := range o.b {
		h.b[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile in µs (bucket midpoint).
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
				return float64(i) / 1e3
			}
			shift := (i - 64) / 64
			lo := uint64((i-64)%64+64) << shift
			return (float64(lo) + float64(uint64(1)<<shift)/2) / 1e3
		}
	}
	return 0
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
	hist     hist
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
	if err := subscribe(c, qos); err != nil {
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
	buf := make([]byte, 256<<10)
	acks := make([]byte, 0, 4096)
	have := 0
	var count, maxSeq int64 = 0, -1
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
			// fixed header and remaining length
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
			if buf[p]>>4 == 4 {
				n++
			}
			p += 2 + rem
		}
		have = copy(buf, buf[p:have])
		a.acked.Store(n)
		select {
		case a.progress <- struct{}{}:
		default:
		}
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

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
