// Package storetest is the conformance suite every store.Store must pass.
// Run executes each check as a subtest against fresh stores from an open
// function: store.Memory runs it, and store/filestore runs it with
// Options.Reopen, which closes the store and opens the same data again so
// the suite also checks that everything acknowledged survives. A Store of
// your own runs it from one test function.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/busbar/busbar/store"
)

// Options tune the suite for a Store.
type Options struct {
	// Reopen, when set, closes s and opens the same data again: the suite
	// then checks that everything acknowledged survives. nil for stores
	// that keep nothing across Close (Memory).
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs every check against fresh stores from open.
func Run(t *testing.T, open func(t *testing.T) store.Store, o Options) {
	checks := []struct {
		name string
		f    func(t *testing.T, s store.Store) store.Store
	}{
		{"sessions", sessions},
		{"inflight order and acks", inflight},
		{"inbound qos2 ids", inbound},
		{"retained set replace delete", retained},
		{"delete session drops its state", deleteSession},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			s = c.f(t, s)
			if o.Reopen != nil {
				t.Run("after reopen", func(t *testing.T) {
					before := dump(t, s)
					s = o.Reopen(t, s)
					if after := dump(t, s); after != before {
						t.Fatalf("state changed across reopen:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveSession(context.Background(), &store.Session{ClientID: "x"}); !errors.Is(err, store.ErrClosed) {
				t.Fatalf("after Close: %v, want store.ErrClosed", err)
			}
		})
	}
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dump renders everything Load replays, in order.
func dump(t *testing.T, s store.Store) string {
	t.Helper()
	out := ""
	must(t, s.Load(ctx, func(r store.Record) error {
		switch r.Kind {
		case store.KindSession:
			out += fmt.Sprintf("S(%s %s %d %v)", r.ClientID, r.Session.Owner, r.Session.Expiry, r.Session.Subs)
		case store.KindInflight:
			out += fmt.Sprintf("F(%s #%d %d %v %s %q)", r.ClientID, r.Inflight.Seq, r.Inflight.PacketID, r.Inflight.Released, r.Inflight.Msg.Subject, r.Inflight.Msg.Payload)
		case store.KindInbound:
			out += fmt.Sprintf("I(%s %d)", r.ClientID, r.Inbound)
		case store.KindRetained:
			out += fmt.Sprintf("R(%s %q)", r.Retained.Subject, r.Retained.Payload)
		}
		return nil
	}))
	return out
}

func expect(t *testing.T, s store.Store, want string) {
	t.Helper()
	if got := dump(t, s); got != want {
		t.Fatalf("stored state:\n got %s\nwant %s", got, want)
	}
}

func sessions(t *testing.T, s store.Store) store.Store {
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "a", Owner: "alice", Expiry: -1,
		Subs: []store.Subscription{{Filter: "x/#", QoS: 1}}}))
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "b", Owner: "bob", Expiry: 60}))
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "a", Owner: "alice", Expiry: 30,
		Subs: []store.Subscription{{Filter: "y", QoS: 2, NoLocal: true}}}))
	expect(t, s, "S(a alice 30 [{y 2 true false 0 0}])S(b bob 60 [])")
	return s
}

func inflight(t *testing.T, s store.Store) store.Store {
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "c"}))
	for i := uint16(1); i <= 3; i++ {
		must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: uint64(i), PacketID: i, Msg: store.Message{Subject: []byte("t"), Payload: []byte{'0' + byte(i)}, QoS: 2}}))
	}
	// Queued (no packet id yet), then sent: replaced in place.
	must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: 4, Msg: store.Message{Subject: []byte("q"), Payload: []byte("4"), QoS: 1}}))
	must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: 5, Msg: store.Message{Subject: []byte("q"), Payload: []byte("5"), QoS: 1}}))
	must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: 4, PacketID: 9, Msg: store.Message{Subject: []byte("q"), Payload: []byte("4"), QoS: 1}}))
	must(t, s.AckInflight(ctx, "c", 2))
	must(t, s.Release(ctx, "c", 3))
	must(t, s.AckInflight(ctx, "c", 99)) // unknown: no error
	expect(t, s, `S(c  0 [])F(c #1 1 false t "1")F(c #3 3 true t "3")F(c #4 9 false q "4")F(c #5 0 false q "5")`)
	return s
}

func inbound(t *testing.T, s store.Store) store.Store {
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "d"}))
	must(t, s.PutInbound(ctx, "d", 7))
	must(t, s.PutInbound(ctx, "d", 5))
	must(t, s.DeleteInbound(ctx, "d", 7))
	expect(t, s, "S(d  0 [])I(d 5)")
	return s
}

func retained(t *testing.T, s store.Store) store.Store {
	must(t, s.SetRetained(ctx, "b", &store.Message{Subject: []byte("b"), Payload: []byte("1"), Retain: true}))
	must(t, s.SetRetained(ctx, "a", &store.Message{Subject: []byte("a"), Payload: []byte("x"), Retain: true}))
	must(t, s.SetRetained(ctx, "b", &store.Message{Subject: []byte("b"), Payload: []byte("2"), Retain: true}))
	must(t, s.SetRetained(ctx, "c", &store.Message{Subject: []byte("c"), Payload: []byte("3")}))
	must(t, s.SetRetained(ctx, "c", &store.Message{Subject: []byte("c")})) // empty payload deletes
	expect(t, s, `R(a "x")R(b "2")`)
	return s
}

func deleteSession(t *testing.T, s store.Store) store.Store {
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "e"}))
	must(t, s.PutInflight(ctx, "e", &store.Inflight{Seq: 1, PacketID: 1, Msg: store.Message{Subject: []byte("t")}}))
	must(t, s.PutInbound(ctx, "e", 3))
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "f"}))
	must(t, s.DeleteSession(ctx, "e"))
	expect(t, s, "S(f  0 [])")
	return s
}
