package transport

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP sockets.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestOutboundInlineWritesNoGoroutine: on TCP, a batch the socket takes
// at once is written by the goroutine that woke the queue; no writer
// goroutine is started (Linux: other platforms always start one).
func TestOutboundInlineWritesNoGoroutine(t *testing.T) {
	client, server := tcpPair(t)
	if _, ok := ConnSink(server).(TrySink); !ok {
		t.Skip("no write without waiting on " + runtime.GOOS)
	}
	o := NewOutbound(0)
	var spawned atomic.Int32
	o.Start(ConnSink(server), server.SetWriteDeadline, time.Second, func(f func()) { spawned.Add(1); go f() }, nil)
	buf := make([]byte, 5)
	for round := range 100 {
		o.Write([]byte("hello"))
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("round %d: %q, %v", round, buf, err)
		}
	}
	if n := spawned.Load(); n != 0 {
		t.Fatalf("%d writer goroutines started for batches the socket took at once", n)
	}
}

// TestOutboundInlineRestInOrder: a peer that does not read fills the
// socket; what a write without waiting left is finished by a writer
// goroutine, in order with everything queued after it, references and
// chunks alike.
func TestOutboundInlineRestInOrder(t *testing.T) {
	client, server := tcpPair(t)
	o := NewOutbound(0)
	var spawned atomic.Int32
	ended := make(chan error, 1)
	o.Start(ConnSink(server), server.SetWriteDeadline, 10*time.Second,
		func(f func()) { spawned.Add(1); go f() }, func(err error) { ended <- err })
	var want bytes.Buffer
	for i := range 3000 {
		size := []int{3, 5000, 100, 9000, 3000, 4095, 20000}[i%7]
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		h := []byte{'H', byte('0' + i%10)}
		want.Write(h)
		want.Write(p)
		want.WriteString("\r\n")
		enqueue(o, h, p)
		o.Wake()
	}
	o.Close(true)
	got := make([]byte, want.Len())
	_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes out of order or corrupted")
	}
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	if _, ok := ConnSink(server).(TrySink); ok && spawned.Load() == 0 {
		t.Fatal("a full socket must hand the rest to a writer goroutine")
	}
	<-o.Done()
}

// TestOutboundInlineAllocatesNothing: writing a batch without waiting
// allocates nothing.
func TestOutboundInlineAllocatesNothing(t *testing.T) {
	client, server := tcpPair(t)
	if _, ok := ConnSink(server).(TrySink); !ok {
		t.Skip("no write without waiting on " + runtime.GOOS)
	}
	go func() { _, _ = io.Copy(io.Discard, client) }()
	o := NewOutbound(0)
	o.Start(ConnSink(server), server.SetWriteDeadline, time.Second, func(f func()) { go f() }, nil)
	msg := []byte("MSG a 1 5\r\nhello\r\n")
	o.Write(msg) // the pools fill
	allocs := testing.AllocsPerRun(1000, func() {
		o.Lock()
		o.AppendLocked(msg)
		o.Unlock()
		o.Wake()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per inline write", allocs)
	}
}

// TestTryWriteBuffersSizes: a write without waiting delivers batches on
// either side of rawWriteMax (raw syscall below, the ordinary one above)
// intact, the rest finished by WriteBuffers.
func TestTryWriteBuffersSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		segs []int
	}{
		{"one small", []int{5}},
		{"many small", []int{3, 100, 4095, 2, 9000}},
		{"exactly rawWriteMax", []int{rawWriteMax / 2, rawWriteMax / 2}},
		{"one byte over", []int{rawWriteMax / 2, rawWriteMax/2 + 1}},
		{"large", []int{ChunkSize, 3 * rawWriteMax, 7, ChunkSize}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			ts, ok := ConnSink(server).(TrySink)
			if !ok {
				t.Skip("no write without waiting on " + runtime.GOOS)
			}
			var want bytes.Buffer
			var bufs net.Buffers
			for i, n := range tc.segs {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				want.Write(p)
				bufs = append(bufs, p)
			}
			got := make(chan []byte, 1)
			go func() {
				b := make([]byte, want.Len())
				_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.ReadFull(client, b)
				got <- b
			}()
			n, err := ts.TryWriteBuffers(&bufs)
			if err != nil {
				t.Fatal(err)
			}
			if len(bufs) > 0 {
				m, err := ts.WriteBuffers(&bufs)
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
			if n != int64(want.Len()) {
				t.Fatalf("wrote %d bytes, want %d", n, want.Len())
			}
			if !bytes.Equal(<-got, want.Bytes()) {
				t.Fatal("bytes corrupted")
			}
		})
	}
}
