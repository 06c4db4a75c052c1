package wsframe_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/busbar/busbar/internal/wsframe"
)

// fuzzConfig reads a codec configuration from the fuzzer's mode byte.
func fuzzConfig(mode uint8) wsframe.Config {
	return wsframe.Config{
		Client:        mode&1 != 0,
		Deflate:       mode&2 != 0,
		ReadTakeover:  mode&4 != 0,
		WriteTakeover: mode&8 != 0,
		NoMasking:     mode&16 != 0,
		CompressMin:   int(mode>>5) * 16, // 0 (the default, 64) to 112
	}
}

// FuzzCodec drives the codec both ways.
//
// Read: arbitrary bytes, cut into reads of chunk bytes, decoded at either
// end with or without compression: no panic, never more returned than
// the room given, buffers within the message limit, every end a close
// code the RFC allows, errors sticky.
//
// Write: the input cut into messages (at 0x00 bytes), each sent as two
// buffers, with a ping between them and a close frame at the end, by the
// end the mode says, then read by the other end with the same
// negotiation: the same bytes come out, the close frame last.
func FuzzCodec(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed.in, seed.mode, seed.chunk)
	}
	f.Fuzz(func(t *testing.T, in []byte, mode, chunk uint8) {
		fuzzRead(t, in, mode, chunk)
		fuzzRoundTrip(t, in, mode, chunk)
	})
}

func fuzzRead(t *testing.T, in []byte, mode, chunk uint8) {
	const limit = 1 << 12
	cfg := fuzzConfig(mode)
	cfg.MaxMessage = limit
	c := wsframe.New(chunks(in, int(chunk%64)+1), &sink{}, cfg)
	buf := make([]byte, 100)
	for range len(in) + 8 {
		n, err := c.Read(buf)
		if n > len(buf) {
			t.Fatalf("read %d into %d", n, len(buf))
		}
		if z, p := c.Buffered(); z > 2*limit || p > 2*limit {
			t.Fatalf("buffers grew past the limit: compressed %d pending %d", z, p)
		}
		if err == nil {
			continue
		}
		var ce *wsframe.CloseError
		if errors.As(err, &ce) {
			switch {
			case ce.Remote && ce.Code != wsframe.CloseNoStatus && (ce.Code < 1000 || ce.Code > 4999):
				t.Fatalf("peer close code %d accepted", ce.Code)
			case !ce.Remote && ce.Code != wsframe.CloseProtocolError && ce.Code != wsframe.CloseInvalidPayload && ce.Code != wsframe.CloseMessageTooBig:
				t.Fatalf("closing with code %d", ce.Code)
			}
		} else if err != io.EOF {
			t.Fatalf("unexpected error %v", err)
		}
		if _, again := c.Read(buf); again != err {
			t.Fatalf("error not sticky: %v then %v", err, again)
		}
		return
	}
}

func fuzzRoundTrip(t *testing.T, in []byte, mode, chunk uint8) {
	cfg := fuzzConfig(mode)
	wire := &sink{}
	w := wsframe.New(chunks(nil, 1), wire, cfg)
	msgs := bytes.Split(in, []byte{0})
	for i, m := range msgs {
		bufs := net.Buffers{m[:len(m)/2], m[len(m)/2:]}
		if n, err := w.WriteBuffers(&bufs); n != int64(len(m)) || err != nil {
			t.Fatalf("message %d: wrote %d of %d: %v", i, n, len(m), err)
		}
		if i%3 == 1 {
			if err := w.Ping(m[:min(len(m), 125)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sent, err := w.WriteClose(4000+int(chunk), string(in[:min(len(in), 200)]), true); !sent || err != nil {
		t.Fatalf("close: %v %v", sent, err)
	}
	rc := cfg
	rc.Client = !cfg.Client
	rc.ReadTakeover, rc.WriteTakeover = cfg.WriteTakeover, cfg.ReadTakeover
	answers := &sink{}
	r := wsframe.New(chunks(wire.Bytes(), int(chunk)+1), answers, rc)
	got, err := readAll(t, r, int(chunk%32)+1)
	var ce *wsframe.CloseError
	if !errors.As(err, &ce) || !ce.Remote || ce.Code != 4000+int(chunk) {
		t.Fatalf("the read ended with %v", err)
	}
	if want := bytes.Join(msgs, nil); !bytes.Equal(got, want) {
		t.Fatalf("read %q, wrote %q", got, want)
	}
	if answers.Len() == 0 {
		t.Fatal("the close frame was not answered")
	}
}

type fuzzSeed struct {
	in          []byte
	mode, chunk uint8
}

// fuzzSeeds: frames of every kind for both ends (server ends read masked
// frames, client ends unmasked ones), compressed or not, with and
// without context takeover.
func fuzzSeeds() []fuzzSeed {
	const (
		server, client, deflate, takeover = 0, 1, 2, 4 | 8
	)
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	return []fuzzSeed{
		{raw(0x82, true, []byte("PUB a 1\r\nx\r\n")), server, 3},
		{raw(0x82, false, []byte("MSG a 1 1\r\nx\r\n")), client, 3},
		{cat(raw(0x01, true, []byte("a")), raw(0x89, true, []byte("p")), raw(0x80, true, []byte("b"))), server, 1},
		{cat(raw(0x01, false, []byte("h\xc3")), raw(0x80, false, []byte("\xa9"))), client, 2},
		{raw(0xC2, true, deflated("hello hello hello")), server | deflate, 7},
		{raw(0xC1, false, deflated("text ✓ compressed")), client | deflate, 5},
		{cat(raw(0xC2, true, deflated("one")), raw(0xC2, true, deflated("two"))), server | deflate | takeover, 9},
		{raw(0x88, true, []byte{0x03, 0xE8, 'o', 'k'}), server, 2},
		{raw(0x88, false, []byte{0x0F, 0xA0}), client, 1},
		{raw(0x8A, false, []byte("pong")), client | 16, 4},
		{[]byte{0x82, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, server, 5},
		{[]byte{0x82, 0x7E, 0x01, 0x00}, client, 1},
		{[]byte("GET / HTTP/1.1\r\n\r\n"), server, 63},
		{[]byte("a\x00bb\x00" + string(bytes.Repeat([]byte("compressible "), 20))), client | deflate | 32, 17},
		{bytes.Repeat([]byte("x\x00"), 50), server | deflate | takeover | 64, 200},
	}
}
