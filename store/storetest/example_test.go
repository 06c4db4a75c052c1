package storetest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/store/storetest"
)

// openStore opens the Store under test; each check of the suite gets a
// fresh one. Here the in-memory store; a Store of your own goes here.
func openStore(*testing.T) store.Store { return store.NewMemory() }

// TestConformance is the test a Store's package writes: one call runs
// every check as a subtest. A durable store also sets Options.Reopen (close
// it, open the same directory again), and the suite then checks that
// everything acknowledged before Close is replayed after it.
func TestConformance(t *testing.T) {
	storetest.Run(t, openStore, storetest.Options{})
}

// What the suite checks, one step by hand: a store replays through Load
// what it acknowledged, and refuses writes after Close.
func Example() {
	ctx := context.Background()
	s := openStore(nil)
	_ = s.SetRetained(ctx, "config.mode", &store.Message{Subject: []byte("config.mode"), Payload: []byte("eco"), QoS: 1, Retain: true})
	_ = s.Load(ctx, func(r store.Record) error {
		if r.Kind == store.KindRetained {
			fmt.Printf("retained %s = %s\n", r.Retained.Subject, r.Retained.Payload)
		}
		return nil
	})
	_ = s.Close()
	fmt.Println(s.SetRetained(ctx, "config.mode", nil))
	// Output:
	// retained config.mode = eco
	// store: closed
}
