package wsframe_test

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/busbar/busbar/internal/wsframe"
)

// chunkReader reads its input at most chunk bytes at a time.
type chunkReader struct {
	in    *bytes.Reader
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(p) > r.chunk {
		p = p[:r.chunk]
	}
	return r.in.Read(p)
}

func chunks(in []byte, chunk int) io.Reader {
	return &chunkReader{in: bytes.NewReader(in), chunk: chunk}
}

// sink collects what a codec writes.
type sink struct{ bytes.Buffer }

func (s *sink) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(&s.Buffer) }

// mask is the key the hand-made client frames use.
var mask = [4]byte{0x11, 0x22, 0x33, 0x44}

// raw encodes one frame with gobwas/ws (an encoder independent of the
// codec's writer): b0 is FIN, RSV and opcode as on the wire; masked
// frames use mask.
func raw(b0 byte, masked bool, payload []byte) []byte {
	f := ws.NewFrame(ws.OpCode(b0&0x0F), b0&0x80 != 0, bytes.Clone(payload))
	f.Header.Rsv = b0 >> 4 & 7
	if masked {
		f = ws.MaskFrameInPlaceWith(f, mask)
	}
	out, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return out
}

// deflateStream compresses msgs as permessage-deflate messages cut from
// one running DEFLATE stream, as a peer that keeps its context writes
// them: each flushed, its sync marker stripped.
func deflateStream(msgs ...string) [][]byte {
	var zs bytes.Buffer
	fw, _ := flate.NewWriter(&zs, flate.BestCompression)
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		start := zs.Len()
		_, _ = io.WriteString(fw, m)
		_ = fw.Flush()
		out[i] = bytes.TrimSuffix(zs.Bytes()[start:], []byte{0, 0, 0xff, 0xff})
	}
	return out
}

// deflated is s compressed as one message (a fresh context).
func deflated(s string) []byte { return deflateStream(s)[0] }

// readAll reads a codec to its end with reads of size rs: the decoded
// bytes and the final error (nil for a plain end of input).
func readAll(t testing.TB, c *wsframe.Codec, rs int) ([]byte, error) {
	t.Helper()
	var out []byte
	buf := make([]byte, rs)
	for {
		n, err := c.Read(buf)
		if n > len(buf) {
			t.Fatalf("read %d into %d", n, len(buf))
		}
		out = append(out, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) && !isCloseError(err) {
				err = nil
			}
			return out, err
		}
	}
}

func isCloseError(err error) bool {
	var ce *wsframe.CloseError
	return errors.As(err, &ce)
}

// frames decodes a stream of frames written by a codec (with gobwas/ws,
// unmasking them).
func frames(t testing.TB, b []byte) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		if f.Header.Masked {
			f = ws.UnmaskFrameInPlace(f)
			f.Header.Masked = true // keep what the wire said
		}
		out = append(out, f)
	}
	return out
}
