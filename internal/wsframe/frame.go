// Package wsframe is busbar's one WebSocket frame codec: RFC 6455
// framing with permessage-deflate (RFC 7692) over a byte stream, for
// either end of a connection. The websocket transport uses it as the
// server end, the leaf node's ws:// links as the client end. It knows
// nothing of the broker or of net.Conn lifetimes: a Codec decodes frames
// read from an io.Reader and writes frames through a BuffersWriter; its
// owner keeps the connection, its deadlines and its closing policy.
//
// Frame headers are gobwas/ws's (ws.Header, ws.CheckHeader,
// ws.WriteHeaderBuffer, ws.Cipher); compressed messages are read through
// its wsflate.Reader.
package wsframe

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// Close codes (RFC 6455 §7.4.1) the codec itself uses.
const (
	CloseNormal         = 1000
	CloseProtocolError  = 1002
	CloseNoStatus       = 1005 // never sent: "no code in the frame"
	CloseInvalidPayload = 1007 // text that is not UTF-8, data that does not inflate
	CloseMessageTooBig  = 1009
)

// Defaults of Config's zero fields.
const (
	// DefaultMaxMessage bounds one message (as nats-server bounds what
	// it reads).
	DefaultMaxMessage = 64 << 20
	// DefaultCompressMin: smaller messages do not shrink when deflated.
	DefaultCompressMin = 64
)

// rsv1 is RSV1 in ws.Header.Rsv: permessage-deflate's "compressed" bit.
var rsv1 = ws.Rsv(true, false, false)

// Config is what the handshake decided for one connection.
type Config struct {
	// Client makes this the client end: frames it reads must not be
	// masked, and it masks the frames it sends unless NoMasking. The
	// zero value is the server end: it sends unmasked frames and refuses
	// unmasked ones (RFC 6455 §5.1).
	Client bool
	// NoMasking: the two ends agreed on unmasked client frames (the
	// Nats-No-Masking header nats-server answers). The client end sends
	// its frames unmasked; the server end accepts them either way.
	NoMasking bool
	// MaxMessage bounds a message's payload, as read and once inflated
	// (close 1009 past it). 0: DefaultMaxMessage.
	MaxMessage int
	// Deflate: permessage-deflate was negotiated. ReadTakeover and
	// WriteTakeover say whether the peer's messages and this end's keep
	// the compression context from one message to the next, as the
	// *_no_context_takeover parameters decided (false: each message is
	// compressed on its own).
	Deflate                     bool
	ReadTakeover, WriteTakeover bool
	// CompressMin is the smallest message deflated when Deflate is on;
	// smaller ones go out plain. 0: DefaultCompressMin.
	CompressMin int
	// ReadEnd, when set, is called once with the error that ends the
	// read side, from Read (read loop), as soon as it happens (bytes
	// decoded before it may still be returned); Read returns what it
	// returns from then on. The owner closes there, answering a
	// violation with its code, and maps the error to its own.
	ReadEnd func(err error) error
}

// BuffersWriter writes a frame (its header and payload buffers) in one
// call and may consume the slice; transport.Sink is one (writev on TCP,
// coalesced records on TLS).
type BuffersWriter interface {
	WriteBuffers(b *net.Buffers) (int64, error)
}

// Writev is a BuffersWriter for a plain writer (net.Buffers.WriteTo: one
// writev on a TCP connection).
func Writev(w io.Writer) BuffersWriter { return writev{w} }

type writev struct{ w io.Writer }

func (v writev) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(v.w) }

// Codec is one end of a WebSocket connection's framing. Read is used by
// one goroutine (the owner's read loop); the write methods may be called
// from any goroutine and are serialized by the codec (the read loop's
// pongs and close answers among them).
type Codec struct {
	cfg  Config
	mask bool // mask what this end sends
	src  io.Reader
	out  BuffersWriter

	// Read side: read loop only.
	hdr      [ws.MaxHeaderSize]byte // a frame header being collected
	hn       int
	h        ws.Header // the current frame's header (RSV1 cleared)
	left     int64     // payload bytes of the current frame still to come
	maskPos  int
	inMsg    bool // a fragmented data message is in progress
	text     bool // ... and it is a text message
	zmsg     bool // ... and it is compressed
	msgLen   int  // payload bytes of the message so far
	ctrl     []byte
	utf      utf8State
	zbuf     []byte // a compressed message being collected
	zr       bytes.Reader
	inflater *wsflate.Reader
	fr       io.ReadCloser // the flate decompressor, reused
	window   []byte        // ReadTakeover: the last 32 KiB inflated
	pend     []byte        // decoded bytes not yet returned (after inflating)
	rerr     error         // returned once pend is empty
	peerDone atomic.Bool   // the peer's close frame was read

	wmu     sync.Mutex // guards the write side and writes to out
	closed  bool       // a close frame was sent
	hb      headerBuf
	iov     net.Buffers // the frame being written: header and payload
	wv      net.Buffers // iov as WriteBuffers consumes it
	scratch []byte      // a masked frame, XORed in a copy
	zw      *flate.Writer
	zout    bytes.Buffer
}

// New returns the codec of a connection that reads frames from src and
// writes them to out.
func New(src io.Reader, out BuffersWriter, cfg Config) *Codec {
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.CompressMin <= 0 {
		cfg.CompressMin = DefaultCompressMin
	}
	return &Codec{cfg: cfg, src: src, out: out, mask: cfg.Client && !cfg.NoMasking}
}

// PeerClosed reports whether the peer's close frame was read. Any
// goroutine.
func (c *Codec) PeerClosed() bool { return c.peerDone.Load() }

// Buffered reports the read side's buffers: the capacity held for a
// compressed message being collected, and the decoded bytes waiting to
// be read. For tests that bound them.
func (c *Codec) Buffered() (compressed, pending int) { return cap(c.zbuf), len(c.pend) }

// headerBuf encodes a frame header with gobwas/ws into its own array:
// ws.WriteHeaderBuffer hands the encoded bytes to Write, which keeps
// only their length.
type headerBuf struct {
	b [ws.MaxHeaderSize]byte
	n int
}

func (hb *headerBuf) Write(p []byte) (int, error) {
	hb.n = len(p)
	return len(p), nil
}

// encode returns h encoded; valid until the next call. c.wmu held.
func (hb *headerBuf) encode(h ws.Header) []byte {
	_ = ws.WriteHeaderBuffer(hb, h, hb.b[:]) // fails only for lengths over 2^63
	return hb.b[:hb.n]
}

// headerLen reports the full length of a frame header from its second
// byte.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// closeBody appends a close frame body to dst: the big-endian code and
// the reason, made valid UTF-8 and cut on a rune boundary to the 123
// bytes a control frame leaves it. Code 0 or 1005 is an empty body.
func closeBody(dst []byte, code int, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	for len(reason) > ws.MaxControlFramePayloadSize-2 {
		_, size := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-size]
	}
	return append(dst, reason...)
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4;
// 1012-1014 are registered with IANA since).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// utf8State validates text a chunk at a time: tail holds the bytes of a
// rune cut by a chunk boundary.
type utf8State struct {
	tail [utf8.UTFMax]byte
	n    int
}

// check validates the next chunk of a text message.
func (u *utf8State) check(p []byte) bool {
	// Complete a rune cut by the previous chunk, a byte at a time.
	for u.n > 0 {
		if len(p) == 0 {
			return true
		}
		u.tail[u.n] = p[0]
		u.n++
		p = p[1:]
		if utf8.FullRune(u.tail[:u.n]) {
			if !utf8.Valid(u.tail[:u.n]) {
				return false
			}
			u.n = 0
		}
	}
	// Hold back an incomplete rune at the end.
	end := len(p)
	for i := 1; i < utf8.UTFMax && i <= len(p); i++ {
		c := p[len(p)-i]
		if c&0xC0 != 0x80 { // a rune start
			if !utf8.FullRune(p[len(p)-i:]) {
				end = len(p) - i
			}
			break
		}
	}
	if !utf8.Valid(p[:end]) {
		return false
	}
	u.n = copy(u.tail[:], p[end:])
	return true
}

// done reports whether the message ended on a rune boundary.
func (u *utf8State) done() bool {
	ok := u.n == 0
	u.n = 0
	return ok
}
