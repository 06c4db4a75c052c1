package filestore

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/busbar/busbar/store"
)

// The log is a sequence of records:
//
//	[length uint32 BE][crc32c uint32 BE][op byte][body]
//
// length counts op and body; the CRC (Castagnoli) covers them. Strings
// and byte strings in a body are uvarint-length-prefixed; integers are
// uvarints (signed ones zig-zag varints).
//
// Formats only grow: a record op is never given a new body. The first
// log format's session, in-flight and retained records (ops 1, 3 and 8)
// are still read; writes use their successors (10, 11, 12), whose message
// carries its expiry and whose session says whether it replaces the
// stored subscriptions.

// Record operations.
const (
	opSaveSessionV1 byte = iota + 1 // read only: opSaveSession replaced it
	opDeleteSession
	opPutInflightV1 // read only: opPutInflight replaced it
	opRelease
	opAck
	opPutInbound
	opDeleteInbound
	opSetRetainedV1 // read only: opSetRetained replaced it
	// opCommit ends a commit group: recovery applies a group's records
	// only when its commit record is there, so a group is all or nothing
	// even when a crash cuts a write short.
	opCommit
	opSaveSession // a session, KeepSubs, messages with Expires
	opPutInflight // an in-flight message with Expires
	opSetRetained // a retained message with Expires
	opPutSub      // one subscription of a session
	opDeleteSub   // a session's subscription, by filter
	opLast        = opDeleteSub
)

const (
	headerSize = 8
	// maxRecord bounds a record's length field, so a corrupt length is
	// caught before anything is allocated for it.
	maxRecord = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// enc appends a record to a buffer.
type enc struct{ b []byte }

// begin starts a record with op; end fills in its length and CRC.
func (e *enc) begin(op byte) int {
	at := len(e.b)
	e.b = append(e.b, 0, 0, 0, 0, 0, 0, 0, 0, op)
	return at
}

func (e *enc) end(at int) {
	body := e.b[at+headerSize:]
	binary.BigEndian.PutUint32(e.b[at:], uint32(len(body)))
	binary.BigEndian.PutUint32(e.b[at+4:], crc32.Checksum(body, crcTable))
}

func (e *enc) uint(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte)  { e.uint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) string(s string) { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// message writes m (the current format: with Expires).
func (e *enc) message(m *store.Message) {
	e.bytes(m.Subject)
	e.bytes(m.Payload)
	e.b = append(e.b, m.QoS)
	e.bool(m.Retain)
	e.bytes(m.Props)
	e.int(m.Expires)
}

func (e *enc) subscription(sub *store.Subscription) {
	e.string(sub.Filter)
	e.b = append(e.b, sub.QoS, sub.RetainHandling)
	e.bool(sub.NoLocal)
	e.bool(sub.RetainAsPublished)
	e.uint(uint64(sub.SubID))
}

// session writes an opSaveSession body.
func (e *enc) session(s *store.Session) {
	e.string(s.ClientID)
	e.string(s.Owner)
	e.int(s.Expiry)
	e.bool(s.KeepSubs)
	if s.KeepSubs {
		e.uint(0)
	} else {
		e.uint(uint64(len(s.Subs)))
		for i := range s.Subs {
			e.subscription(&s.Subs[i])
		}
	}
	e.bool(s.Will != nil)
	if s.Will != nil {
		e.message(s.Will)
	}
	e.int(s.WillDelay)
}

func (e *enc) inflight(f *store.Inflight) {
	e.uint(f.Seq)
	e.uint(uint64(f.PacketID))
	e.bool(f.Released)
	e.message(&f.Msg)
}

// dec reads a record body. Byte strings it returns are copies (the
// store keeps them).
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errShort
	}
	d.b = nil
}

func (d *dec) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bool() bool { return d.byte() != 0 }

func (d *dec) raw() []byte {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	r := d.raw()
	if r == nil {
		return nil
	}
	return append([]byte{}, r...)
}

func (d *dec) string() string { return string(d.raw()) }

// message reads a message; v1 is the first format's (no Expires).
func (d *dec) message(v1 bool) store.Message {
	m := store.Message{Subject: d.bytes(), Payload: d.bytes(), QoS: d.byte(), Retain: d.bool(), Props: d.bytes()}
	if !v1 {
		m.Expires = d.int()
	}
	return m
}

func (d *dec) subscription() store.Subscription {
	sub := store.Subscription{Filter: d.string(), QoS: d.byte(), RetainHandling: d.byte()}
	sub.NoLocal, sub.RetainAsPublished = d.bool(), d.bool()
	sub.SubID = uint32(d.uint())
	return sub
}

// session reads an opSaveSession body, or with v1 an opSaveSessionV1 one.
func (d *dec) session(v1 bool) *store.Session {
	s := &store.Session{ClientID: d.string(), Owner: d.string(), Expiry: d.int()}
	if !v1 {
		s.KeepSubs = d.bool()
	}
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return s
	}
	for range n {
		s.Subs = append(s.Subs, d.subscription())
	}
	if d.bool() {
		w := d.message(v1)
		s.Will = &w
	}
	s.WillDelay = d.int()
	return s
}

func (d *dec) inflight(v1 bool) *store.Inflight {
	f := &store.Inflight{Seq: d.uint(), PacketID: uint16(d.uint()), Released: d.bool()}
	f.Msg = d.message(v1)
	return f
}
