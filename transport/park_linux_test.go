package transport

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testpeer"
)

// lowParkAfter makes idle connections park after d for the test.
func lowParkAfter(t *testing.T, d time.Duration) {
	t.Helper()
	old := SetParkAfter(d)
	t.Cleanup(func() { SetParkAfter(old) })
}

// echo sends one frame and reads it back.
func echo(t *testing.T, client net.Conn, frame string) {
	t.Helper()
	msg := append([]byte{byte(len(frame))}, frame...)
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("echo of %q: %v", frame, err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// TestConnParksWhenIdle: a set-up connection parks at the hand-off and,
// resumed by input, parks again once idle; it answers input and takes
// writes from other goroutines while parked; the peer's close ends it.
func TestConnParksWhenIdle(t *testing.T) {
	lowParkAfter(t, 50*time.Millisecond)
	f, client := serveFrames(t, 1)
	b := f.c.b
	echo(t, client, "set up")
	testpeer.WaitUntil(t, "parked after the hand-off", func() bool { return Parked(b) == 1 })
	for _, s := range []string{"one", "two", "three"} {
		echo(t, client, s)
		testpeer.WaitUntil(t, "parked again after "+s, func() bool { return Parked(b) == 1 })
	}
	// A write from another goroutine needs no read loop.
	if !f.c.Out().Write([]byte{2, 'h', 'i'}) {
		t.Fatal("write refused")
	}
	f.c.Wake()
	got := make([]byte, 3)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "\x02hi" {
		t.Fatalf("write while parked: %q, %v", got, err)
	}
	if Parked(b) != 1 {
		t.Fatal("a write resumed the read loop")
	}
	client.Close()
	if err := <-f.ended; !errors.Is(err, io.EOF) {
		t.Fatalf("ended with %v, want EOF", err)
	}
	testpeer.WaitUntil(t, "nothing parked", func() bool { return Parked(b) == 0 })
}

// TestConnParkedKeepAlive: a parked connection with a read timeout (MQTT
// keep-alive) lives while input comes within it and ends with a timeout,
// not before it passed, once input stops.
func TestConnParkedKeepAlive(t *testing.T) {
	lowParkAfter(t, 20*time.Millisecond)
	const keep = 400 * time.Millisecond
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(t.Context()) })
	f := &frames{setUp: 1, keep: keep}
	client := serveFramesOn(t, b, f)
	echo(t, client, "set up")
	parks := 0
	for i := range 8 {
		testpeer.WaitUntil(t, "parked", func() bool { return Parked(b) == 1 })
		parks++
		time.Sleep(keep / 4) // a peer's pace, well within the keep-alive
		echo(t, client, string(rune('a'+i)))
	}
	last := time.Now()
	testpeer.WaitUntil(t, "parked at the end", func() bool { return Parked(b) == 1 })
	var err2 error
	select {
	case err2 = <-f.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the keep-alive did not end the parked connection")
	}
	var ne net.Error
	if !errors.As(err2, &ne) || !ne.Timeout() {
		t.Fatalf("ended with %v, want a timeout", err2)
	}
	if d := time.Since(last); d < keep {
		t.Fatalf("ended %v after the last input, before the keep-alive (%v)", d, keep)
	}
	if n := f.ends.Load(); n != 1 || Parked(b) != 0 {
		t.Fatalf("Ended ran %d times, %d parked", n, Parked(b))
	}
}

// TestConnParkVetoedByCutUnit: a connection idle in the middle of a unit
// does not park (the read must complete it); once completed it parks.
func TestConnParkVetoedByCutUnit(t *testing.T) {
	lowParkAfter(t, 20*time.Millisecond)
	f, client := serveFrames(t, 1)
	b := f.c.b
	echo(t, client, "set up")
	testpeer.WaitUntil(t, "parked", func() bool { return Parked(b) == 1 })
	if _, err := client.Write([]byte{5, 'c', 'u'}); err != nil {
		t.Fatal(err)
	}
	// The resumed loop keeps "cu" and waits for the rest; the sweeper's
	// request is refused (veto) and the connection stays unparked.
	p := f.c.pk.p
	testpeer.WaitUntil(t, "the park refused", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.at(f.c).veto != 0 && p.at(f.c).veto == f.c.last.Load()
	})
	if Parked(b) != 0 {
		t.Fatal("parked holding a cut unit")
	}
	if _, err := client.Write([]byte("t!!")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "\x05cut!!" {
		t.Fatalf("echo %q, %v", got, err)
	}
	testpeer.WaitUntil(t, "parked after the unit", func() bool { return Parked(b) == 1 })
}

// TestConnParkedCloseEndsOnce: Close from another goroutine resumes a
// parked connection and Ended runs once, also when input arrives at the
// same time (the poller and Close race to resume it).
func TestConnParkedCloseEndsOnce(t *testing.T) {
	lowParkAfter(t, 20*time.Millisecond)
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(t.Context()) })
	reason := errors.New("closed by the test")
	for i := range 30 {
		f := &frames{setUp: 1}
		client := serveFramesOn(t, b, f)
		echo(t, client, "set up")
		testpeer.WaitUntil(t, "parked", func() bool { return Parked(b) == 1 })
		var wg sync.WaitGroup
		if i%2 == 1 {
			wg.Go(func() { _, _ = client.Write([]byte{1, 'x'}) })
		}
		f.c.Close(reason)
		wg.Wait()
		select {
		case <-f.ended:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Close did not end the parked connection", i)
		}
		if !errors.Is(f.c.Reason(), reason) {
			t.Fatalf("round %d: reason %v", i, f.c.Reason())
		}
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.Copy(io.Discard, client) // to EOF, or a reset (the 'x' unread)
		testpeer.WaitUntil(t, "nothing parked", func() bool { return Parked(b) == 0 })
		if n := f.ends.Load(); n != 1 {
			t.Fatalf("round %d: Ended ran %d times", i, n)
		}
		client.Close()
	}
}

// TestShutdownEndsParkedConns: Shutdown ends every parked connection
// (Ended once each) and the parker's goroutine, and leaves no goroutine
// behind.
func TestShutdownEndsParkedConns(t *testing.T) {
	lowParkAfter(t, 20*time.Millisecond)
	before := runtime.NumGoroutine()
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	fs := make([]*frames, n)
	clients := make([]net.Conn, n)
	for i := range fs {
		fs[i] = &frames{setUp: 1}
		clients[i] = serveFramesOn(t, b, fs[i])
		echo(t, clients[i], "set up")
	}
	testpeer.WaitUntil(t, "all parked", func() bool { return Parked(b) == n })
	for _, f := range fs {
		b.Go(func() { f.c.Close(broker.ErrServerShutdown) }) // as the broker's clients are
	}
	if err := b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if k := f.ends.Load(); k != 1 {
			t.Fatalf("connection %d: Ended ran %d times", i, k)
		}
	}
	if Parked(b) != 0 {
		t.Fatalf("%d still parked", Parked(b))
	}
	for _, c := range clients {
		c.Close()
	}
	testpeer.WaitUntil(t, "the goroutines gone", func() bool { return runtime.NumGoroutine() <= before })
}
