package websocket

import (
	"bytes"
	"compress/flate"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// pipeConn is a net.Conn that reads from a fixed input in small chunks
// and discards writes.
type pipeConn struct {
	in    *bytes.Reader
	chunk int
	out   bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error) {
	if len(b) > p.chunk {
		b = b[:p.chunk]
	}
	return p.in.Read(b)
}
func (p *pipeConn) Write(b []byte) (int, error)      { return p.out.Write(b) }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

func maskedFrame(b0 byte, payload []byte) []byte {
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	default:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

func deflated(s string) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	_, _ = w.Write([]byte(s))
	_ = w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// decodeAll reads everything a client input decodes to.
func decodeAll(in []byte, chunk, readSize int, deflate bool) (string, error) {
	pc := &pipeConn{in: bytes.NewReader(in), chunk: chunk}
	c := newConn(pc, 1<<10, deflate)
	var out strings.Builder
	buf := make([]byte, readSize)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out.String(), err
		}
	}
}

// TestDecodeSplits: the same input decodes the same whatever the read
// and chunk sizes (headers, masks, UTF-8 and compressed messages cut
// anywhere).
func TestDecodeSplits(t *testing.T) {
	var in []byte
	in = append(in, maskedFrame(0x81, []byte("héllo "))...)
	in = append(in, maskedFrame(0x02, []byte("wor"))...)
	in = append(in, maskedFrame(0x89, []byte("p"))...)
	in = append(in, maskedFrame(0x80, []byte("ld "))...)
	in = append(in, maskedFrame(0xC2, deflated("compressed ✓ "))...)
	in = append(in, maskedFrame(0x82, bytes.Repeat([]byte("x"), 300))...)
	in = append(in, maskedFrame(0x88, []byte{0x03, 0xE8})...)
	want := "héllo world compressed ✓ " + strings.Repeat("x", 300)
	for _, chunk := range []int{1, 2, 3, 7, 64, 4096} {
		for _, rs := range []int{1, 5, 16, 512} {
			got, err := decodeAll(in, chunk, rs, true)
			if err != nil || got != want {
				t.Fatalf("chunk %d read %d: %q, %v", chunk, rs, got, err)
			}
		}
	}
}

// TestDecodeRefusals: protocol violations end the connection with the
// right close code.
func TestDecodeRefusals(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		code int
	}{
		{"unmasked", []byte{0x82, 0x01, 'a'}, CloseProtocolError},
		{"fragmented control", maskedFrame(0x09, []byte("p")), CloseProtocolError},
		{"long control", maskedFrame(0x89, bytes.Repeat([]byte("p"), 126)), CloseProtocolError},
		{"rsv2 set", maskedFrame(0xA2, []byte("x")), CloseProtocolError},
		{"continuation first", maskedFrame(0x80, []byte("x")), CloseProtocolError},
		{"data inside a message", append(maskedFrame(0x02, []byte("a")), maskedFrame(0x82, []byte("b"))...), CloseProtocolError},
		{"unknown opcode", maskedFrame(0x83, []byte("x")), CloseProtocolError},
		{"bad utf-8", maskedFrame(0x81, []byte{0xff, 'a'}), CloseInvalidPayload},
		{"utf-8 cut at the end", maskedFrame(0x81, []byte{0xe2, 0x9c}), CloseInvalidPayload},
		{"too big", maskedFrame(0x82, bytes.Repeat([]byte("x"), 2000)), CloseMessageTooBig},
		{"inflates too big", []byte{}, CloseMessageTooBig},
		{"bad close code", maskedFrame(0x88, []byte{0x03, 0xED}), CloseProtocolError},
	}
	cases[10].in = maskedFrame(0xC2, deflated(strings.Repeat("z", 5000)))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := &pipeConn{in: bytes.NewReader(tc.in), chunk: 4096}
			c := newConn(pc, 1<<10, true)
			buf := make([]byte, 512)
			var err error
			for err == nil {
				_, err = c.Read(buf)
			}
			if int(c.code.Load()) != tc.code {
				t.Fatalf("close code %d, want %d (err %v)", c.code.Load(), tc.code, err)
			}
			if !bytes.HasPrefix(pc.out.Bytes(), []byte{0x88}) {
				t.Fatalf("no close frame sent: %x", pc.out.Bytes())
			}
		})
	}
}

// FuzzFrames feeds arbitrary client bytes to the frame decoder: it must
// never panic, never return more than it was given room for, and keep
// its buffers within the message limit.
func FuzzFrames(f *testing.F) {
	f.Add(maskedFrame(0x82, []byte("PUB a 1\r\nx\r\n")), uint8(3))
	f.Add(append(maskedFrame(0x01, []byte("a")), maskedFrame(0x80, []byte("b"))...), uint8(1))
	f.Add(maskedFrame(0xC2, deflated("hello")), uint8(7))
	f.Add(maskedFrame(0x88, []byte{0x03, 0xE8, 'o', 'k'}), uint8(2))
	f.Add([]byte{0x82, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, uint8(5))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		pc := &pipeConn{in: bytes.NewReader(in), chunk: int(chunk%64) + 1}
		c := newConn(pc, 1<<12, true)
		buf := make([]byte, 100)
		for range len(in) + 8 {
			n, err := c.Read(buf)
			if n > len(buf) {
				t.Fatalf("read %d into %d", n, len(buf))
			}
			if zbuf, pend := c.fc.Buffered(); zbuf > 2<<12 || pend > 2<<12 {
				t.Fatalf("buffers grew past the limit: zbuf %d pend %d", zbuf, pend)
			}
			if err != nil {
				return
			}
		}
	})
}

// FuzzHandshake feeds arbitrary requests to the upgrader: no panic, and
// never more read than max_handshake_bytes (gobwas/ws alone keeps reading
// a header line of any length).
func FuzzHandshake(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt, bearer.eA\r\nCookie: a=b\r\nOrigin: http://x\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 3000) + "\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		tr, err := New(Options{MaxHandshakeBytes: 1024, Handshake: Handshake{SubprotocolAuth: true, BasicAuth: true, KeyAuth: Source{Header: "k", Query: "k", Cookie: "k"}}})
		if err != nil {
			t.Fatal(err)
		}
		pc := &pipeConn{in: bytes.NewReader(in), chunk: 512}
		r := &request{remote: pc.RemoteAddr()}
		u := tr.upgrader(r)
		lc := &limitedConn{Conn: pc, left: 1024}
		_, _ = u.Upgrade(lc)
		if read := len(in) - pc.in.Len(); read > 1024 {
			t.Fatalf("read %d bytes of handshake, limit 1024", read)
		}
		_, _, _ = tr.credentials(r, 0)
		_ = tr.originAllowed(r)
	})
}
