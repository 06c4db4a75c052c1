package hub

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
}

func newFake() *fakeFuture {
	return &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
}
func (f *fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeFuture) Err() <-chan error            { return f.err }
func (f *fakeFuture) Msg() *nats.Msg               { return nil }

// TestDurableFailsWhatWasQueuedBehindAFailedWrite: SetRetained's own
// Durable takes the batch holding its write, so the PUBACK's Durable,
// queued right after, holds none; when the write fails, both callbacks
// get the error (a PUBACK for a retained message the hub did not store
// was sent before). A callback queued after the failure was seen is not
// failed by it, and the write's acknowledgement stays readable after.
func TestDurableFailsWhatWasQueuedBehindAFailedWrite(t *testing.T) {
	s := New(Options{Timeout: 10 * time.Second})
	defer s.Close()
	bad, good := newFake(), newFake()
	results := make(chan string, 4)
	report := func(name string) func(error) {
		return func(err error) {
			if err != nil {
				name += " failed"
			}
			results <- name
		}
	}
	s.mu.Lock()
	s.futs = []*write{{f: bad}}
	s.mu.Unlock()
	s.Durable(report("retained"))
	s.Durable(report("puback"))
	bad.err <- errors.New("no responders")
	for _, want := range []string{"retained failed", "puback failed"} {
		if got := <-results; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	w := &write{f: good}
	s.mu.Lock()
	s.futs = []*write{w}
	s.mu.Unlock()
	s.Durable(func(err error) {
		if err != nil || w.ack == nil || w.ack.Sequence != 7 {
			results <- "later: " + errors.Join(err, errors.New("ack not kept")).Error()
			return
		}
		results <- "later"
	})
	good.ok <- &jetstream.PubAck{Sequence: 7}
	if got := <-results; got != "later" {
		t.Fatal(got)
	}
}
