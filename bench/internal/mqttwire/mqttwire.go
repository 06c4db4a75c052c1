// Package mqttwire is the hand-written MQTT 3.1.1 client the bench load
// programs (durablebench, mqttpeer) drive brokers with: CONNECT (no keep
// alive), SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK, DISCONNECT, and a
// reader that splits the packets a broker sends. It does no more than a
// benchmark needs, and allocates nothing per packet.
//
// Every payload it writes is stamped: the send time (ns, big endian) in
// bytes 0-7 and the publisher's sequence number in bytes 8-15, zeros
// after.
package mqttwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrTooLarge is Reader.Read's answer when a packet does not fit its
// buffer.
var ErrTooLarge = errors.New("mqttwire: packet larger than read buffer")

// handshakeTimeout bounds Dial and Subscribe.
const handshakeTimeout = 10 * time.Second

// AppendString appends s as an MQTT string (two length bytes first).
func AppendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// AppendVarint appends n as an MQTT variable byte integer.
func AppendVarint(b []byte, n int) []byte {
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

// Dial connects to addr and completes CONNECT/CONNACK as client id, with
// a clean session or not and no keep alive. present is the CONNACK's
// session present flag.
func Dial(addr, id string, clean bool) (c net.Conn, present bool, err error) {
	c, err = net.DialTimeout("tcp", addr, handshakeTimeout)
	if err != nil {
		return nil, false, err
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 0} // keep alive 0
	body = AppendString(body, id)
	pkt := AppendVarint([]byte{0x10}, len(body))
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

// Subscribe sends SUBSCRIBE for filter at qos and waits for a SUBACK that
// grants it.
func Subscribe(c net.Conn, filter string, qos byte) error {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	body := AppendString([]byte{0, 1}, filter)
	body = append(body, qos)
	pkt := AppendVarint([]byte{0x82}, len(body))
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

// Disconnect sends DISCONNECT and closes c.
func Disconnect(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{0xe0, 0})
	c.Close()
}

var zeros [1024]byte

// AppendPublish appends a PUBLISH of topic at QoS 0 or 1 (id is used at
// QoS 1) whose payload is size bytes (at least 16) stamped with ts and
// seq.
func AppendPublish(b []byte, topic string, qos byte, id uint16, ts int64, seq uint64, size int) []byte {
	rem := 2 + len(topic) + size
	h := byte(0x30)
	if qos == 1 {
		rem += 2
		h = 0x32
	}
	b = AppendVarint(append(b, h), rem)
	b = AppendString(b, topic)
	if qos == 1 {
		b = append(b, byte(id>>8), byte(id))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint64(b, seq)
	for n := size - 16; n > 0; {
		k := min(n, len(zeros))
		b = append(b, zeros[:k]...)
		n -= k
	}
	return b
}

// Stamp reads the send time and sequence number a payload carries; ok is
// false when it is shorter than a stamp.
func Stamp(payload []byte) (ts int64, seq uint64, ok bool) {
	if len(payload) < 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(payload)), binary.BigEndian.Uint64(payload[8:]), true
}

// ParsePublish splits the body of a PUBLISH whose first byte is h: its
// QoS, its packet identifier (0 at QoS 0) and its payload; ok is false
// when the body is too short for its topic.
func ParsePublish(h byte, body []byte) (qos byte, id uint16, payload []byte, ok bool) {
	if len(body) < 2 {
		return 0, 0, nil, false
	}
	q := body[2:]
	if tl := int(body[0])<<8 | int(body[1]); tl <= len(q) {
		q = q[tl:]
	} else {
		return 0, 0, nil, false
	}
	if qos = (h >> 1) & 3; qos > 0 {
		if len(q) < 2 {
			return 0, 0, nil, false
		}
		id, q = binary.BigEndian.Uint16(q), q[2:]
	}
	return qos, id, q, true
}

// AppendPuback appends a PUBACK for packet identifier id.
func AppendPuback(b []byte, id uint16) []byte {
	return append(b, 0x40, 2, byte(id>>8), byte(id))
}

// Reader splits the packets read from a connection. One goroutine.
type Reader struct {
	c    net.Conn
	buf  []byte
	r, w int // the next packet starts at buf[r]; buf[:w] is read
}

// NewReader reads c through a buffer of size bytes, the largest packet
// it can hold.
func NewReader(c net.Conn, size int) *Reader {
	return &Reader{c: c, buf: make([]byte, size)}
}

// Read waits for the next bytes from the connection, keeping the start
// of a packet Next could not complete; ErrTooLarge when that packet fills
// the buffer.
func (r *Reader) Read() error {
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if r.w == len(r.buf) {
		return ErrTooLarge
	}
	n, err := r.c.Read(r.buf[r.w:])
	if err != nil {
		return err
	}
	r.w += n
	return nil
}

// Next returns the next whole packet read: its first byte and its body
// (valid until the next Read); ok is false when no whole packet is left.
func (r *Reader) Next() (h byte, body []byte, ok bool) {
	p, have := r.r, r.w
	if have-p < 2 {
		return 0, nil, false
	}
	rem, mul, i := 0, 1, p+1
	for ; i < have && i < p+5; i++ {
		rem += int(r.buf[i]&0x7f) * mul
		mul <<= 7
		if r.buf[i]&0x80 == 0 {
			ok = true
			i++
			break
		}
	}
	if !ok || have-i < rem {
		return 0, nil, false
	}
	r.r = i + rem
	return r.buf[p], r.buf[i : i+rem], true
}

// ReadPublishes reads PUBLISH packets from c (through a buffer of size
// bytes) until an error, which it returns. It answers those at QoS 1 or
// more with a PUBACK, written after the read that brought them; hands
// onPublish the stamp of each (now is clock() at that read); and calls
// onRead after each read. Other packets are skipped.
func ReadPublishes(c net.Conn, size int, clock func() int64, onPublish func(now, ts int64, seq uint64), onRead func(now int64)) error {
	r := NewReader(c, size)
	acks := make([]byte, 0, 4096)
	for {
		if err := r.Read(); err != nil {
			return err
		}
		now := clock()
		for {
			h, body, ok := r.Next()
			if !ok {
				break
			}
			if h>>4 != 3 {
				continue // not a PUBLISH
			}
			qos, id, payload, ok := ParsePublish(h, body)
			if !ok {
				continue
			}
			if qos > 0 {
				acks = AppendPuback(acks, id)
			}
			if ts, seq, ok := Stamp(payload); ok {
				onPublish(now, ts, seq)
			}
		}
		if len(acks) > 0 {
			if _, err := c.Write(acks); err != nil {
				return err
			}
			acks = acks[:0]
		}
		onRead(now)
	}
}

// ReadPubacks reads a publisher's connection until an error, which it
// returns: onPuback gets each PUBACK's packet identifier (now is clock()
// at the read that brought it), onRead is called after each read.
func ReadPubacks(c net.Conn, clock func() int64, onPuback func(now int64, id uint16), onRead func(now int64)) error {
	r := NewReader(c, 64<<10)
	for {
		if err := r.Read(); err != nil {
			return err
		}
		now := clock()
		for {
			h, body, ok := r.Next()
			if !ok {
				break
			}
			if h>>4 == 4 && len(body) == 2 {
				onPuback(now, binary.BigEndian.Uint16(body))
			}
		}
		onRead(now)
	}
}
