package wsframe_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/busbar/busbar/internal/wsframe"
)

// discard is a BuffersWriter that only counts.
type discard struct{}

func (discard) WriteBuffers(b *net.Buffers) (int64, error) {
	var n int64
	for _, p := range *b {
		n += int64(len(p))
	}
	*b = (*b)[:0]
	return n, nil
}

// batch is an outbound batch as natsproto queues it: 256 deliveries of
// a header chunk and a shared 16-byte payload.
func batch() net.Buffers {
	hdr, payload := []byte("MSG bench.x 1 16\r\n"), []byte("0123456789abcdef\r\n")
	var b net.Buffers
	for range 256 {
		b = append(b, hdr, payload)
	}
	return b
}

// BenchmarkWriteBatch: the server end frames a batch: one header ahead
// of the payload references, no copy, no allocation.
func BenchmarkWriteBatch(b *testing.B) { benchWrite(b, wsframe.Config{}) }

// BenchmarkWriteBatchMasked: the client end (a leaf link) copies the
// batch to mask it.
func BenchmarkWriteBatchMasked(b *testing.B) { benchWrite(b, wsframe.Config{Client: true}) }

func benchWrite(b *testing.B, cfg wsframe.Config) {
	c := wsframe.New(chunks(nil, 1), discard{}, cfg)
	src := batch()
	bufs := make(net.Buffers, 0, len(src))
	b.ReportAllocs()
	b.SetBytes(int64(len(src)) / 2 * 36)
	for b.Loop() {
		bufs = append(bufs[:0], src...)
		if _, err := c.WriteBuffers(&bufs); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader serves the same bytes forever.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// BenchmarkRead: the server end decodes masked frames of 64 36-byte ops
// in place, no allocation.
func BenchmarkRead(b *testing.B) { benchRead(b, 64) }

// BenchmarkReadSmallFrames: one op per frame, where the per-frame cost
// (header checks) shows.
func BenchmarkReadSmallFrames(b *testing.B) { benchRead(b, 1) }

func benchRead(b *testing.B, ops int) {
	payload := bytes.Repeat([]byte("PUB bench.x 16\r\n0123456789abcdef\r\n"), ops)
	frame := raw(0x82, true, payload)
	c := wsframe.New(&loopReader{data: bytes.Repeat(frame, 1024/ops)}, discard{}, wsframe.Config{})
	buf := make([]byte, 32<<10)
	per := len(payload) * max(1, 100/ops) // decoded bytes per iteration
	b.ReportAllocs()
	b.SetBytes(int64(per))
	for b.Loop() {
		for left := per; left > 0; {
			n, err := c.Read(buf[:min(len(buf), left)])
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			left -= n
		}
	}
}
