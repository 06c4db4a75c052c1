package filestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/store/filestore"
	"github.com/busbar/busbar/store/storetest"
)

var ctx = context.Background()

func open(t *testing.T, dir string, o filestore.Options) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	dirs := map[store.Store]string{}
	var mu sync.Mutex
	storetest.Run(t, func(t *testing.T) store.Store {
		dir := t.TempDir()
		s := open(t, dir, filestore.Options{})
		mu.Lock()
		dirs[s] = dir
		mu.Unlock()
		return s
	}, storetest.Options{Reopen: func(t *testing.T, s store.Store) store.Store {
		mu.Lock()
		dir := dirs[s]
		mu.Unlock()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		n := open(t, dir, filestore.Options{})
		mu.Lock()
		dirs[n] = dir
		mu.Unlock()
		return n
	}})
}

// dump renders the state Load replays.
func dump(t *testing.T, s store.Store) string {
	t.Helper()
	var b bytes.Buffer
	err := s.Load(ctx, func(r store.Record) error {
		switch r.Kind {
		case store.KindSession:
			fmt.Fprintf(&b, "S(%s)", r.ClientID)
		case store.KindInflight:
			fmt.Fprintf(&b, "F(%s %d %d %v %s)", r.ClientID, r.Inflight.Seq, r.Inflight.PacketID, r.Inflight.Released, r.Inflight.Msg.Payload)
		case store.KindInbound:
			fmt.Fprintf(&b, "I(%s %d)", r.ClientID, r.Inbound)
		case store.KindRetained:
			fmt.Fprintf(&b, "R(%s %s)", r.Retained.Subject, r.Retained.Payload)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// fill writes n in-flight records for one session and returns the log
// size after each record (the record boundaries).
func fill(t *testing.T, dir string, n int) []int64 {
	t.Helper()
	s := open(t, dir, filestore.Options{})
	var ends []int64
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "c"}))
	must(t, s.Sync(ctx))
	ends = append(ends, size(t, dir))
	for i := 1; i <= n; i++ {
		must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: uint64(i), PacketID: uint16(i), Msg: store.Message{Subject: []byte("t"), Payload: []byte(fmt.Sprint("m", i)), QoS: 1}}))
		must(t, s.Sync(ctx))
		ends = append(ends, size(t, dir))
	}
	must(t, s.Close())
	return ends
}

func size(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, filestore.LogName))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTornTail: a log cut anywhere inside its last record opens with the
// records before it, says so in one line, and appends after them.
func TestTornTail(t *testing.T) {
	for _, cut := range []int64{1, 4, 8, 9, 20} {
		t.Run(fmt.Sprint("cut ", cut), func(t *testing.T) {
			dir := t.TempDir()
			ends := fill(t, dir, 3)
			path := filepath.Join(dir, filestore.LogName)
			at := ends[2] + cut
			if at >= ends[3] {
				t.Skipf("record shorter than %d", cut)
			}
			must(t, os.Truncate(path, at))
			var logs bytes.Buffer
			s := open(t, dir, filestore.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if got, want := dump(t, s), "S(c)F(c 1 1 false m1)F(c 2 2 false m2)"; got != want {
				t.Fatalf("after a torn tail: %s, want %s", got, want)
			}
			if !bytes.Contains(logs.Bytes(), []byte("cut a torn tail")) {
				t.Fatalf("no log line for the torn tail: %q", logs.String())
			}
			must(t, s.PutInflight(ctx, "c", &store.Inflight{Seq: 9, PacketID: 9, Msg: store.Message{Payload: []byte("after")}}))
			must(t, s.Close())
			s = open(t, dir, filestore.Options{})
			defer s.Close()
			if got, want := dump(t, s), "S(c)F(c 1 1 false m1)F(c 2 2 false m2)F(c 9 9 false after)"; got != want {
				t.Fatalf("appending after the cut: %s, want %s", got, want)
			}
		})
	}
}

// TestCorruptionRefusedOrRepaired: a flipped bit in a middle record is
// not a torn tail: Open refuses with ErrCorrupt and says where; with
// Repair it cuts the log there.
func TestCorruptionRefusedOrRepaired(t *testing.T) {
	dir := t.TempDir()
	ends := fill(t, dir, 4)
	path := filepath.Join(dir, filestore.LogName)
	data, err := os.ReadFile(path)
	must(t, err)
	data[ends[2]+12] ^= 0x10 // inside record 3's body
	must(t, os.WriteFile(path, data, 0o640))

	_, err = filestore.Open(dir, filestore.Options{})
	if !errors.Is(err, filestore.ErrCorrupt) {
		t.Fatalf("Open of a corrupt log: %v, want ErrCorrupt", err)
	}
	t.Logf("refused: %v", err)
	var logs bytes.Buffer
	s := open(t, dir, filestore.Options{Repair: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer s.Close()
	if got, want := dump(t, s), "S(c)F(c 1 1 false m1)F(c 2 2 false m2)"; got != want {
		t.Fatalf("after repair: %s, want %s", got, want)
	}
	if !bytes.Contains(logs.Bytes(), []byte("repaired a corrupt log")) {
		t.Fatalf("no log line for the repair: %q", logs.String())
	}

	// A corrupt length field is refused too, never allocated.
	dir2 := t.TempDir()
	ends = fill(t, dir2, 3)
	path2 := filepath.Join(dir2, filestore.LogName)
	data, err = os.ReadFile(path2)
	must(t, err)
	data[ends[1]] = 0x7F
	must(t, os.WriteFile(path2, data, 0o640))
	if _, err := filestore.Open(dir2, filestore.Options{}); !errors.Is(err, filestore.ErrCorrupt) {
		t.Fatalf("a bad length: %v, want ErrCorrupt", err)
	}
}

// TestGroupCommit: concurrent writers share fdatasyncs.
func TestGroupCommit(t *testing.T) {
	s := open(t, t.TempDir(), filestore.Options{})
	defer s.Close()
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprint("c", w)
			for i := range each {
				must(t, s.PutInflight(ctx, id, &store.Inflight{Seq: uint64(i + 1), PacketID: uint16(i + 1), Msg: store.Message{Payload: []byte("x")}}))
				must(t, s.Sync(ctx))
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%d records in %d commits", st.Records, st.Commits)
	if st.Records != writers*each {
		t.Fatalf("%d records, want %d", st.Records, writers*each)
	}
	if st.Commits >= st.Records {
		t.Fatalf("%d commits for %d records: no grouping", st.Commits, st.Records)
	}
}

// TestDurableCallbackOrder: Durable callbacks run in order, after the
// writes before them.
func TestDurableCallbackOrder(t *testing.T) {
	s := open(t, t.TempDir(), filestore.Options{})
	defer s.Close()
	var mu sync.Mutex
	var order []int
	done := make(chan struct{})
	for i := range 100 {
		must(t, s.PutInbound(ctx, "c", uint16(i+1)))
		s.Durable(func(err error) {
			must(t, err)
			mu.Lock()
			order = append(order, i)
			if len(order) == 100 {
				close(done)
			}
			mu.Unlock()
		})
	}
	<-done
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d ran at position %d", v, i)
		}
	}
}

// TestCompactionBoundsDisk: put/ack churn keeps the log near the live
// state, and the state survives the rewrite.
func TestCompactionBoundsDisk(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, filestore.Options{CompactMin: 64 << 10})
	payload := bytes.Repeat([]byte("p"), 200)
	must(t, s.SaveSession(ctx, &store.Session{ClientID: "keep"}))
	must(t, s.PutInflight(ctx, "keep", &store.Inflight{Seq: 1, PacketID: 1, Msg: store.Message{Payload: []byte("live")}}))
	must(t, s.SetRetained(ctx, "r", &store.Message{Subject: []byte("r"), Payload: []byte("kept")}))
	for i := range 20000 {
		seq := uint64(i + 2)
		must(t, s.PutInflight(ctx, "churn", &store.Inflight{Seq: seq, PacketID: uint16(seq), Msg: store.Message{Payload: payload}}))
		must(t, s.AckInflight(ctx, "churn", seq))
		if i%500 == 0 {
			must(t, s.Sync(ctx))
		}
	}
	must(t, s.Sync(ctx))
	st := s.Stats()
	t.Logf("after 20000 put/ack: log %d bytes, %d compactions", st.Bytes, st.Compacted)
	if st.Compacted == 0 || st.Bytes > 512<<10 {
		t.Fatalf("log not bounded: %+v", st)
	}
	want := dump(t, s)
	must(t, s.Close())
	s = open(t, dir, filestore.Options{})
	defer s.Close()
	if got := dump(t, s); got != want {
		t.Fatalf("after compaction and reopen: %s, want %s", got, want)
	}
}
