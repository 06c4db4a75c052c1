package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() }, storetest.Options{})
}

func TestMemoryConcurrent(t *testing.T) {
	m := store.NewMemory()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			id := fmt.Sprint("c", g)
			for i := range 200 {
				pid := uint16(i + 1)
				_ = m.PutInflight(context.Background(), id, &store.Inflight{Seq: uint64(pid), PacketID: pid})
				_ = m.AckInflight(context.Background(), id, uint64(pid))
			}
		})
	}
	wg.Wait()
	n := 0
	_ = m.Load(context.Background(), func(r store.Record) error {
		if r.Kind == store.KindInflight {
			n++
		}
		return nil
	})
	if n != 0 {
		t.Fatalf("%d in-flight records left after every one was acknowledged", n)
	}
}

func ExampleMemory() {
	s := store.NewMemory()
	ctx := context.Background()
	_ = s.SetRetained(ctx, "sensors.t1", &store.Message{Subject: []byte("sensors.t1"), Payload: []byte("21.5"), Retain: true})
	_ = s.Load(ctx, func(r store.Record) error {
		fmt.Printf("%s = %s\n", r.Retained.Subject, r.Retained.Payload)
		return nil
	})
	// Output: sensors.t1 = 21.5
}

func BenchmarkMemoryPutAck(b *testing.B) {
	m := store.NewMemory()
	f := &store.Inflight{Seq: 1, PacketID: 1, Msg: store.Message{Subject: []byte("t"), Payload: make([]byte, 64)}}
	b.ReportAllocs()
	for range b.N {
		_ = m.PutInflight(context.Background(), "c", f)
		_ = m.AckInflight(context.Background(), "c", 1)
	}
}
