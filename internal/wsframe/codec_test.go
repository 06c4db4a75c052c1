package wsframe_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/busbar/busbar/internal/wsframe"
)

// TestReadSplits: the same input decodes the same whatever the read and
// chunk sizes (headers, masks, UTF-8 and compressed messages cut
// anywhere), at both ends; the ping in the middle is answered and the
// close frame at the end echoed.
func TestReadSplits(t *testing.T) {
	for _, client := range []bool{false, true} {
		masked := !client
		var in []byte
		in = append(in, raw(0x81, masked, []byte("héllo "))...)
		in = append(in, raw(0x02, masked, []byte("wor"))...)
		in = append(in, raw(0x89, masked, []byte("p"))...)
		in = append(in, raw(0x80, masked, []byte("ld "))...)
		in = append(in, raw(0xC2, masked, deflated("compressed ✓ "))...)
		in = append(in, raw(0x41, masked, deflated("ü"))...)
		in = append(in, raw(0x80, masked, nil)...)
		in = append(in, raw(0x82, masked, bytes.Repeat([]byte("x"), 300))...)
		in = append(in, raw(0x88, masked, []byte{0x03, 0xE9, 'b', 'y', 'e'})...)
		want := "héllo world compressed ✓ ü" + strings.Repeat("x", 300)
		for _, chunk := range []int{1, 2, 3, 7, 64, 4096} {
			for _, rs := range []int{1, 5, 16, 512} {
				out := &sink{}
				c := wsframe.New(chunks(in, chunk), out, wsframe.Config{Client: client, Deflate: true})
				got, err := readAll(t, c, rs)
				var ce *wsframe.CloseError
				if string(got) != want || !errors.As(err, &ce) || !ce.Remote || ce.Code != 1001 || ce.Reason != "bye" || !errors.Is(err, io.EOF) {
					t.Fatalf("client=%v chunk %d read %d: %q, %v", client, chunk, rs, got, err)
				}
				fs := frames(t, out.Bytes())
				if len(fs) != 2 || fs[0].Header.OpCode != ws.OpPong || string(fs[0].Payload) != "p" ||
					fs[1].Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(fs[1].Payload) != 1001 || fs[0].Header.Masked != client {
					t.Fatalf("client=%v: answers %+v", client, fs)
				}
				if !c.PeerClosed() {
					t.Fatal("PeerClosed false after the close frame")
				}
			}
		}
	}
}

// TestReadRefusals: violations end the stream with the close code the
// owner should send, and the code's sentinel.
func TestReadRefusals(t *testing.T) {
	m := func(b0 byte, p []byte) []byte { return raw(b0, true, p) }
	cases := []struct {
		name    string
		client  bool
		deflate bool
		in      []byte
		code    int
	}{
		{"server: unmasked", false, false, raw(0x82, false, []byte("a")), wsframe.CloseProtocolError},
		{"client: masked", true, false, raw(0x82, true, []byte("a")), wsframe.CloseProtocolError},
		{"fragmented control", false, false, m(0x09, []byte("p")), wsframe.CloseProtocolError},
		{"long control", false, false, m(0x89, bytes.Repeat([]byte("p"), 126)), wsframe.CloseProtocolError},
		{"rsv2 set", false, true, m(0xA2, []byte("x")), wsframe.CloseProtocolError},
		{"rsv1 without deflate", false, false, m(0xC2, deflated("x")), wsframe.CloseProtocolError},
		{"rsv1 on a continuation", false, true, append(m(0x02, []byte("a")), m(0xC0, []byte("b"))...), wsframe.CloseProtocolError},
		{"rsv1 on a ping", false, true, m(0xC9, nil), wsframe.CloseProtocolError},
		{"continuation first", false, false, m(0x80, []byte("x")), wsframe.CloseProtocolError},
		{"data inside a message", false, false, append(m(0x02, []byte("a")), m(0x82, []byte("b"))...), wsframe.CloseProtocolError},
		{"unknown opcode", false, false, m(0x83, []byte("x")), wsframe.CloseProtocolError},
		{"length msb", true, false, []byte{0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1}, wsframe.CloseProtocolError},
		{"bad utf-8", false, false, m(0x81, []byte{0xff, 'a'}), wsframe.CloseInvalidPayload},
		{"utf-8 cut at the end", false, false, m(0x81, []byte{0xe2, 0x9c}), wsframe.CloseInvalidPayload},
		{"compressed text not utf-8", false, true, m(0xC1, deflated("\xff")), wsframe.CloseInvalidPayload},
		{"does not inflate", false, true, m(0xC2, []byte{0xff, 0xff, 0xff}), wsframe.CloseInvalidPayload},
		{"too big", false, false, m(0x82, bytes.Repeat([]byte("x"), 2000)), wsframe.CloseMessageTooBig},
		{"too big across frames", false, false, append(m(0x02, bytes.Repeat([]byte("x"), 600)), m(0x80, bytes.Repeat([]byte("x"), 600))...), wsframe.CloseMessageTooBig},
		{"inflates too big", false, true, m(0xC2, deflated(strings.Repeat("z", 5000))), wsframe.CloseMessageTooBig},
		{"bad close code", false, false, m(0x88, []byte{0x03, 0xED}), wsframe.CloseProtocolError},
		{"one-byte close", false, false, m(0x88, []byte{0x03}), wsframe.CloseProtocolError},
		{"close reason not utf-8", false, false, m(0x88, []byte{0x03, 0xE8, 0xff}), wsframe.CloseInvalidPayload},
	}
	sentinel := map[int]error{
		wsframe.CloseProtocolError:  wsframe.ErrProtocol,
		wsframe.CloseInvalidPayload: wsframe.ErrInvalidPayload,
		wsframe.CloseMessageTooBig:  wsframe.ErrTooBig,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := wsframe.New(chunks(tc.in, 4096), &sink{}, wsframe.Config{Client: tc.client, Deflate: tc.deflate, MaxMessage: 1 << 10})
			_, err := readAll(t, c, 512)
			var ce *wsframe.CloseError
			if !errors.As(err, &ce) || ce.Remote || ce.Code != tc.code || !errors.Is(err, sentinel[tc.code]) {
				t.Fatalf("err %v, want close %d", err, tc.code)
			}
			if _, again := c.Read(make([]byte, 8)); again != err {
				t.Fatalf("error not sticky: %v then %v", err, again)
			}
		})
	}
}

// TestCloseFrames: close bodies as sent (reason made UTF-8 and cut on a
// rune boundary to 123 bytes, no body for 1005), one close frame only,
// writes after it refused, control payloads limited.
func TestCloseFrames(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	cases := []struct {
		name   string
		code   int
		reason string
		want   []byte
	}{
		{"normal", 1000, "", []byte{0x03, 0xE8}},
		{"reason", 4403, "forbidden", append([]byte{0x11, 0x33}, "forbidden"...)},
		{"no status", wsframe.CloseNoStatus, "ignored", nil},
		{"long reason", 1008, long, append([]byte{0x03, 0xF0}, long[:122]...)},
		{"invalid reason", 1011, "a\xffb", append([]byte{0x03, 0xF3}, "a\uFFFDb"...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := &sink{}
			c := wsframe.New(chunks(nil, 1), out, wsframe.Config{})
			if sent, err := c.WriteClose(tc.code, tc.reason, false); !sent || err != nil {
				t.Fatalf("WriteClose: %v %v", sent, err)
			}
			if sent, _ := c.WriteClose(1000, "", true); sent {
				t.Fatal("a second close frame")
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, wsframe.ErrClosed) || !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v", err)
			}
			fs := frames(t, out.Bytes())
			if len(fs) != 1 || fs[0].Header.OpCode != ws.OpClose || !bytes.Equal(fs[0].Payload, tc.want) || !utf8.Valid(fs[0].Payload[min(2, len(fs[0].Payload)):]) {
				t.Fatalf("frames %+v, want body %q", fs, tc.want)
			}
		})
	}
	c := wsframe.New(chunks(nil, 1), &sink{}, wsframe.Config{Client: true})
	if err := c.Ping(make([]byte, 126)); !errors.Is(err, wsframe.ErrControlTooLong) {
		t.Fatalf("ping of 126 bytes: %v", err)
	}
}

// blockingSink holds a write until released (a writer stuck on a slow
// peer).
type blockingSink struct {
	entered, release chan struct{}
}

func (b *blockingSink) WriteBuffers(v *net.Buffers) (int64, error) {
	b.entered <- struct{}{}
	<-b.release
	return v.WriteTo(io.Discard)
}

// TestCloseDoesNotWaitForAStuckWriter: WriteClose(wait false) gives up
// while another write is in progress.
func TestCloseDoesNotWaitForAStuckWriter(t *testing.T) {
	bs := &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
	c := wsframe.New(chunks(nil, 1), bs, wsframe.Config{})
	done := make(chan struct{})
	go func() {
		_, _ = c.Write([]byte("stuck"))
		close(done)
	}()
	<-bs.entered
	if sent, err := c.WriteClose(1000, "", false); sent || err != nil {
		t.Fatalf("close frame written past a stuck writer: %v %v", sent, err)
	}
	close(bs.release)
	<-done
}

// TestHeaders: header lengths at the 7-, 16- and 64-bit boundaries, FIN
// and the mask bit by end (checked with gobwas/ws's reader); payloads
// arrive intact and the caller's buffers are not changed by masking.
func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  wsframe.Config
		mask bool
	}{
		{"server", wsframe.Config{}, false},
		{"client", wsframe.Config{Client: true}, true},
		{"client, no masking", wsframe.Config{Client: true, NoMasking: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
				out := &sink{}
				c := wsframe.New(chunks(nil, 1), out, tc.cfg)
				p := bytes.Repeat([]byte{'a'}, n)
				bufs := net.Buffers{p[:n/2], p[n/2:]}
				if w, err := c.WriteBuffers(&bufs); w != int64(n) || err != nil || len(bufs) != 0 {
					t.Fatalf("%d: wrote %d, %v, left %d buffers", n, w, err, len(bufs))
				}
				fs := frames(t, out.Bytes())
				if len(fs) != 1 || !fs[0].Header.Fin || fs[0].Header.OpCode != ws.OpBinary || fs[0].Header.Rsv != 0 ||
					fs[0].Header.Masked != tc.mask || !bytes.Equal(fs[0].Payload, p) {
					t.Fatalf("%d: %+v", n, fs[0].Header)
				}
				if bytes.Count(p, []byte{'a'}) != n {
					t.Fatal("the caller's buffer was masked in place")
				}
			}
		})
	}
}

// TestRoundTrip: what one end writes the other reads, for every masking
// and compression setting, with and without context takeover; small
// messages go out plain, the rest deflated (RSV1).
func TestRoundTrip(t *testing.T) {
	msgs := []string{"short", strings.Repeat("compress me, ", 40), "", strings.Repeat("compress me, ", 40) + "again", "ü✓" + strings.Repeat("z", 70000)}
	for _, tc := range []struct {
		name              string
		client, noMask    bool
		deflate, takeRead bool
	}{
		{name: "server to client"},
		{name: "client to server", client: true},
		{name: "client to server, no masking", client: true, noMask: true},
		{name: "server to client, deflate", deflate: true},
		{name: "client to server, deflate", client: true, deflate: true},
		{name: "server to client, takeover", deflate: true, takeRead: true},
		{name: "client to server, takeover", client: true, deflate: true, takeRead: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := &sink{}
			w := wsframe.New(chunks(nil, 1), wire, wsframe.Config{Client: tc.client, NoMasking: tc.noMask, Deflate: tc.deflate, WriteTakeover: tc.takeRead})
			for _, m := range msgs {
				if _, err := w.Write([]byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.WriteClose(1000, "done", true); err != nil {
				t.Fatal(err)
			}
			for i, f := range frames(t, wire.Bytes()) {
				if f.Header.OpCode == ws.OpClose {
					continue
				}
				if want := tc.deflate && len(msgs[i]) >= wsframe.DefaultCompressMin; f.Header.Rsv1() != want {
					t.Fatalf("message %d: RSV1 %v, want %v", i, f.Header.Rsv1(), want)
				}
			}
			r := wsframe.New(chunks(wire.Bytes(), 1000), &sink{}, wsframe.Config{Client: !tc.client, NoMasking: tc.noMask, Deflate: tc.deflate, ReadTakeover: tc.takeRead})
			got, err := readAll(t, r, 4096)
			var ce *wsframe.CloseError
			if string(got) != strings.Join(msgs, "") || !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "done" {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
		})
	}
}

// TestWriteTakeover: with context takeover a repeated message refers
// back to the previous one and shrinks; without, it compresses the same
// every time.
func TestWriteTakeover(t *testing.T) {
	// Past 128 bytes (BestSpeed codes smaller flushes on their own), and
	// varied enough that only the previous message makes it shrink.
	msg := make([]byte, 400)
	for i := range msg {
		msg[i] = 'a' + byte(i*i*7%26)
	}
	sizes := func(takeover bool) (first, second int) {
		wire := &sink{}
		c := wsframe.New(chunks(nil, 1), wire, wsframe.Config{Deflate: true, WriteTakeover: takeover})
		_, _ = c.Write(msg)
		first = wire.Len()
		_, _ = c.Write(msg)
		return first, wire.Len() - first
	}
	if a, b := sizes(false); a != b {
		t.Fatalf("without takeover: %d then %d bytes", a, b)
	}
	if a, b := sizes(true); b >= a {
		t.Fatalf("with takeover: %d then %d bytes", a, b)
	}
}

// TestReadTakeover: messages cut from one running DEFLATE stream (as a
// peer keeping its context writes them) decode with ReadTakeover.
func TestReadTakeover(t *testing.T) {
	var msgs []string
	for i := range 5 {
		msgs = append(msgs, strings.Repeat("the same words again and again ", 20+i))
	}
	var in []byte
	for _, z := range deflateStream(msgs...) {
		in = append(in, raw(0xC2, true, z)...)
	}
	want := strings.Join(msgs, "")
	c := wsframe.New(chunks(in, 100), &sink{}, wsframe.Config{Deflate: true, ReadTakeover: true})
	if got, err := readAll(t, c, 300); string(got) != want || err != nil {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
}
