package transport

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// enqueue appends one NATS-like message: a copied header, then the
// payload copied or referenced, then CRLF.
func enqueue(o *Outbound, hdr, payload []byte) bool {
	o.Lock()
	defer o.Unlock()
	buf := append(o.HeadroomLocked(len(hdr)), hdr...)
	o.CommitLocked(buf)
	if len(payload) >= RefThreshold {
		o.AppendRefLocked(payload)
	} else {
		o.AppendLocked(payload)
	}
	o.AppendLocked([]byte("\r\n"))
	return !o.OverLocked()
}

func TestOutboundWritesInOrderAndDrainsPending(t *testing.T) {
	client, server := net.Pipe()
	o := NewOutbound(1 << 20)
	o.Start(ConnSink(server), nil, 0, func(f func()) { go f() }, nil)
	var want bytes.Buffer
	for i := range 40 {
		size := []int{3, 5000, 100, 9000, 3000, 4095, 20000}[i%7]
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		h := []byte("H" + string(rune('0'+i%10)))
		want.Write(h)
		want.Write(p)
		want.WriteString("\r\n")
		if !enqueue(o, h, p) {
			t.Fatalf("over limit at %d", i)
		}
		if i%7 == 0 {
			o.Wake()
		}
	}
	o.Wake()
	got := make([]byte, want.Len())
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes out of order or corrupted")
	}
	deadline := time.Now().Add(2 * time.Second)
	for o.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending stuck at %d after everything was read", o.Pending())
		}
		time.Sleep(time.Millisecond)
	}
	o.Close(true)
	<-o.Done()
}

func TestOutboundOverLimit(t *testing.T) {
	o := NewOutbound(1000)
	if !enqueue(o, nil, make([]byte, 900)) {
		t.Fatal("900 bytes is under a 1000 byte limit")
	}
	if enqueue(o, nil, make([]byte, 200)) {
		t.Fatal("1100 bytes must be over a 1000 byte limit")
	}
}

func TestOutboundCloseFlushes(t *testing.T) {
	client, server := net.Pipe()
	o := NewOutbound(0)
	done := make(chan error, 1)
	o.Start(ConnSink(server), nil, 0, func(f func()) { go f() }, func(err error) { done <- err })
	o.Write([]byte("last words"))
	o.Close(true)
	buf := make([]byte, 10)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "last words" {
		t.Fatalf("got %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if o.Write([]byte("x")) {
		t.Fatal("Write after Close must report false")
	}
}

// TestOutboundWriterOnlyWhileBusy checks the writer goroutine exits when
// the queue is empty and a new one starts for the next burst.
func TestOutboundWriterOnlyWhileBusy(t *testing.T) {
	client, server := net.Pipe()
	o := NewOutbound(0)
	var spawned, running atomic.Int32
	o.Start(ConnSink(server), nil, 0, func(f func()) {
		spawned.Add(1)
		running.Add(1)
		go func() { defer running.Add(-1); f() }()
	}, nil)
	buf := make([]byte, 5)
	for round := range 3 {
		o.Write([]byte("hello"))
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("round %d: %q, %v", round, buf, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for running.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: writer still running with nothing to write", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := spawned.Load(); n != 3 {
		t.Fatalf("spawned %d writers for 3 bursts, want 3", n)
	}
}
