package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busbar/busbar/broker"
)

// frames is a Handler for a protocol of length-prefixed frames (one
// length byte, then that many bytes) that leaves a cut frame unconsumed,
// as MQTT does: the Conn keeps it for the next read. It echoes each frame
// back and records what the buffer held after each read.
type frames struct {
	c      *Conn
	mu     sync.Mutex
	got    [][]byte
	setUp  int           // frames before SetUp
	keep   time.Duration // once set up, each read refreshes a read deadline this far (SetReadTimeout)
	ended  chan error
	ends   atomic.Int32 // Ended calls
	heldAt []int        // len(c.rb.b) when Received returned nothing kept
}

func (f *frames) Received(b []byte) (int, int, error) {
	off := 0
	for off < len(b) {
		n := int(b[off])
		if off+1+n > len(b) {
			return off, 1 + n, nil
		}
		frame := b[off+1 : off+1+n]
		f.mu.Lock()
		f.got = append(f.got, bytes.Clone(frame))
		count := len(f.got)
		f.mu.Unlock()
		f.c.Out().Write(b[off : off+1+n])
		if count == f.setUp {
			f.c.SetUp()
			if f.keep > 0 {
				f.c.SetReadTimeout(f.keep)
			}
		}
		off += 1 + n
	}
	return off, 0, nil
}

func (f *frames) Closing(error) {}

func (f *frames) Ended(err error) {
	f.ends.Add(1)
	f.c.Close(err)
	f.ended <- err
}

func serveFrames(t *testing.T, setUp int) (*frames, net.Conn) {
	t.Helper()
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(t.Context()) })
	f := &frames{setUp: setUp}
	return f, serveFramesOn(t, b, f)
}

// serveFramesOn serves f on b over a fresh TCP pair, on a goroutine b
// tracks (as an accept loop starts one), and returns the client's side.
func serveFramesOn(t *testing.T, b *broker.Broker, f *frames) net.Conn {
	t.Helper()
	client, server := tcpPair(t)
	f.c, f.ended = &Conn{}, make(chan error, 1)
	f.c.Init(b, server, f, ConnConfig{ReadBuf: 64})
	f.c.Start(server)
	b.Go(func() { _ = f.c.Serve(true) })
	return client
}

// TestConnKeepsCutUnitsAcrossReads: frames cut anywhere across writes
// arrive whole and in order, before and after the read loop's hand-off,
// whatever the frame's size against the buffers (64 B idle, 64 KiB
// bursts); the echo comes back in order.
func TestConnKeepsCutUnitsAcrossReads(t *testing.T) {
	f, client := serveFrames(t, 3)
	var want bytes.Buffer
	for i := range 300 {
		n := []int{0, 1, 63, 64, 200, 255, 17}[i%7]
		want.WriteByte(byte(n))
		want.Write(bytes.Repeat([]byte{byte(i)}, n))
	}
	stream := want.Bytes()
	echo := make(chan []byte, 1)
	go func() {
		got := make([]byte, len(stream))
		_, _ = io.ReadFull(client, got)
		echo <- got
	}()
	for off := 0; off < len(stream); {
		step := min(1+off%97, len(stream)-off)
		if _, err := client.Write(stream[off : off+step]); err != nil {
			t.Fatal(err)
		}
		off += step
		if off%7 == 0 {
			time.Sleep(50 * time.Microsecond) // let reads see the cuts
		}
	}
	select {
	case got := <-echo:
		if !bytes.Equal(got, stream) {
			t.Fatal("echo out of order or corrupted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no echo")
	}
	f.mu.Lock()
	n := len(f.got)
	f.mu.Unlock()
	if n != 300 {
		t.Fatalf("%d frames of 300", n)
	}
	client.Close()
	if err := <-f.ended; !errors.Is(err, io.EOF) {
		t.Fatalf("ended with %v, want EOF", err)
	}
}

// TestConnHoldsNoReadBufferWhileIdle: on a Linux socket, a connection
// whose input was all consumed holds no read buffer while it waits.
func TestConnHoldsNoReadBufferWhileIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads wait without a buffer on Linux only")
	}
	f, client := serveFrames(t, 1)
	buf := make([]byte, 4)
	for round := range 3 {
		if _, err := client.Write([]byte{3, 'a', 'b', 'c'}); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// The echo left before Received returned; give the loop a moment to
	// finish the read and wait again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if f.c.Out().Pending() == 0 && idleBuffer(f.c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection still holds a read buffer")
		}
		time.Sleep(time.Millisecond)
	}
	client.Close()
	<-f.ended
}

// idleBuffer reads the read loop's buffer state under the queue's lock:
// in raw reads the loop last touches the buffer before it releases that
// lock (Outbound.Release), then waits in the poller.
func idleBuffer(c *Conn) bool {
	c.out.Lock()
	defer c.out.Unlock()
	return c.rb.b == nil
}
