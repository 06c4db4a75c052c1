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
		{"subscriptions one at a time", subscriptions},
		{"message properties and expiry", extras},
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
			out += fmt.Sprintf("S(%s %s %d %v", r.ClientID, r.Session.Owner, r.Session.Expiry, r.Session.Subs)
			if w := r.Session.Will; w != nil {
				out += fmt.Sprintf(" will %s %q%s delay %d", w.Subject, w.Payload, extra(w), r.Session.WillDelay)
			}
			out += ")"
		case store.KindInflight:
			out += fmt.Sprintf("F(%s #%d %d %v %s %q%s)", r.ClientID, r.Inflight.Seq, r.Inflight.PacketID, r.Inflight.Released, r.Inflight.Msg.Subject, r.Inflight.Msg.Payload, extra(&r.Inflight.Msg))
		case store.KindInbound:
			out += fmt.Sprintf("I(%s %d)", r.ClientID, r.Inbound)
		case store.KindRetained:
			out += fmt.Sprintf("R(%s %q%s)", r.Retained.Subject, r.Retained.Payload, extra(r.Retained))
		}
		return nil
	}))
	return out
}

// extra renders a message's properties and expiry, when it has them.
func extra(m *store.Message) string {
	if len(m.Props) == 0 && m.Expires == 0 {
		return ""
	}
	return fmt.Sprintf(" props %x expires %d", m.Props, m.Expires)
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

func subscriptions(t *testing.T, s store.Store) store.Store {
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "g", Owner: "gina", Expiry: -1,
		Subs: []store.Subscription{{Filter: "a", QoS: 1}, {Filter: "b"}}}))
	must(t, s.PutSubscription(ctx, "g", &store.Subscription{Filter: "c", QoS: 2, SubID: 4}))
	must(t, s.PutSubscription(ctx, "g", &store.Subscription{Filter: "a", QoS: 0, NoLocal: true})) // replaces
	must(t, s.DeleteSubscription(ctx, "g", "b"))
	must(t, s.DeleteSubscription(ctx, "g", "never")) // unknown: no error
	// KeepSubs: the rest of the session changes, its subscriptions stay.
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "g", Owner: "gina", Expiry: 60, KeepSubs: true}))
	expect(t, s, "S(g gina 60 [{a 0 true false 0 0} {c 2 false false 0 4}])")
	// Without it, Subs replaces them.
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "h", Owner: "hal", Subs: []store.Subscription{{Filter: "x"}}}))
	must(t, s.PutSubscription(ctx, "h", &store.Subscription{Filter: "y"}))
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "h", Owner: "hal", Subs: []store.Subscription{{Filter: "z"}}}))
	expect(t, s, "S(g gina 60 [{a 0 true false 0 0} {c 2 false false 0 4}])S(h hal 0 [{z 0 false false 0 0}])")
	return s
}

// extras: a message's properties and expiry come back with it, in
// flight, retained and as a will.
func extras(t *testing.T, s store.Store) store.Store {
	props := []byte{3, 0x01, 0x01, 0x02} // wire form, opaque to the store
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "p", Will: &store.Message{Subject: []byte("w"), Payload: []byte("bye"), Props: props, Expires: 7}}))
	must(t, s.PutInflight(ctx, "p", &store.Inflight{Seq: 1, Msg: store.Message{Subject: []byte("t"), Payload: []byte("x"), Props: props, Expires: 1700000000123456789}}))
	must(t, s.SetRetained(ctx, "r", &store.Message{Subject: []byte("r"), Payload: []byte("y"), Retain: true, Props: props, Expires: 42}))
	var got string
	must(t, s.Load(ctx, func(r store.Record) error {
		var m *store.Message
		switch r.Kind {
		case store.KindSession:
			m = r.Session.Will
		case store.KindInflight:
			m = &r.Inflight.Msg
		case store.KindRetained:
			m = r.Retained
		}
		if m != nil {
			got += fmt.Sprintf("%s:%x:%d ", m.Subject, m.Props, m.Expires)
		}
		return nil
	}))
	if want := "w:03010102:7 t:03010102:1700000000123456789 r:03010102:42 "; got != want {
		t.Fatalf("properties and expiry:\n got %s\nwant %s", got, want)
	}
	return s
}
