package natsproto

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder is a handler that writes every event as text, so two parses
// can be compared.
type recorder struct {
	out bytes.Buffer
}

func (r *recorder) onConnect(arg []byte) error { fmt.Fprintf(&r.out, "CONNECT %q\n", arg); return nil }
func (r *recorder) onPub(s, rep []byte, h int, m []byte, _ bool) error {
	fmt.Fprintf(&r.out, "PUB %q %q %d %q\n", s, rep, h, m)
	return nil
}
func (r *recorder) onSub(s, q, sid []byte) error {
	fmt.Fprintf(&r.out, "SUB %q %q %q\n", s, q, sid)
	return nil
}
func (r *recorder) onUnsub(sid []byte, max int64) error {
	fmt.Fprintf(&r.out, "UNSUB %q %d\n", sid, max)
	return nil
}
func (r *recorder) onPing() error { r.out.WriteString("PING\n"); return nil }
func (r *recorder) onPong() error { r.out.WriteString("PONG\n"); return nil }

// parseAll parses in chunks of chunk bytes, reading large payloads
// straight into the parser's buffer as the read loop does.
func parseAll(in []byte, chunk int) (string, string) {
	r := &recorder{}
	p := newParser(r, 256, 1<<16)
	var err error
	for len(in) > 0 && err == nil {
		if d := p.directBuf(); d != nil {
			n := copy(d[:min(len(d), chunk)], in)
			err = p.directFilled(n)
			in = in[n:]
			continue
		}
		n := min(chunk, len(in))
		// Copy each chunk into a fresh buffer scribbled over afterwards,
		// so aliasing bugs show up as differences.
		buf := make([]byte, n)
		copy(buf, in[:n])
		err = p.parse(buf)
		for i := range buf {
			buf[i] = '#'
		}
		in = in[n:]
	}
	return r.out.String(), errText(err)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	var pe *protoError
	if !errors.As(err, &pe) {
		return "non-protocol error: " + err.Error()
	}
	return pe.text
}

var seeds = []string{
	"CONNECT {\"verbose\":false}\r\nPING\r\n",
	"PUB foo 5\r\nhello\r\n",
	"PUB foo bar 0\r\n\r\n",
	"HPUB foo reply 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
	"SUB foo 1\r\nSUB foo q 2\r\nUNSUB 1\r\nUNSUB 2 5\r\n",
	"sub\tfoo\t1\r\npong\r\n",
	"PUB foo 3\r\nabcd\r\n",
	"PUB foo -1\r\n",
	"XYZ\r\n",
	"PUB " + string(bytes.Repeat([]byte("a"), 300)) + " 1\r\nx\r\n",
	"PUB foo 2000\r\n",
	"PUB big 9000\r\n" + strings.Repeat("z", 9000) + "\r\nPING\r\n",
	"PUB big 9000\r\n" + strings.Repeat("z", 9001) + "\r\n",
	"\r\n",
	"+OK\r\n-ERR 'x'\r\n",
}

func TestParserChunkingIsInvisible(t *testing.T) {
	for _, s := range seeds {
		whole, werr := parseAll([]byte(s), len(s)+1)
		for chunk := 1; chunk < len(s); chunk++ {
			got, gerr := parseAll([]byte(s), chunk)
			if got != whole || gerr != werr {
				t.Fatalf("input %q in chunks of %d:\n got %q err %q\nwant %q err %q", s, chunk, got, gerr, whole, werr)
			}
		}
	}
}

func TestParserEvents(t *testing.T) {
	got, err := parseAll([]byte("PUB a r 2\r\nhi\r\nHPUB b 3 5\r\nh\r\nxy\r\nUNSUB 7 3\r\n"), 1000)
	want := "PUB \"a\" \"r\" -1 \"hi\"\nPUB \"b\" \"\" 3 \"h\\r\\nxy\"\nUNSUB \"7\" 3\n"
	if got != want || err != "" {
		t.Fatalf("got %q (err %q), want %q", got, err, want)
	}
}

// FuzzParser checks the parser never panics, only fails with protocol
// errors, and that splitting the input into reads changes nothing.
func FuzzParser(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		if len(in) > 1<<16 {
			return
		}
		whole, werr := parseAll(in, len(in)+1)
		if len(werr) > 20 && werr[:20] == "non-protocol error: " {
			t.Fatal(werr)
		}
		got, gerr := parseAll(in, int(chunk)%17+1)
		if got != whole || gerr != werr {
			t.Fatalf("chunking changed the result:\n got %q err %q\nwant %q err %q", got, gerr, whole, werr)
		}
	})
}
