package filestore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/store/filestore"
)

// FuzzRecover opens arbitrary bytes as a log: Open must never panic and
// either accept the log (a torn tail cut) or refuse it with ErrCorrupt;
// refused, Repair opens it. Whatever opened must open again, unchanged:
// recovery leaves a log that needs none. Seeds: logs the store wrote (the
// current format and testdata/v1.log), whole and cut.
func FuzzRecover(f *testing.F) {
	dir := f.TempDir()
	s, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range []error{
		s.SaveSession(ctx, &store.Session{ClientID: "a", Owner: "o", Expiry: -1, Subs: []store.Subscription{{Filter: "x/#", QoS: 1}},
			Will: &store.Message{Subject: []byte("w"), Payload: []byte("bye"), Props: []byte{3, 1, 1, 1}}}),
		s.PutSubscription(ctx, "a", &store.Subscription{Filter: "y", QoS: 2}),
		s.PutInflight(ctx, "a", &store.Inflight{Seq: 1, PacketID: 1, Msg: store.Message{Subject: []byte("t"), Payload: []byte("p"), Expires: 99}}),
		s.Sync(ctx),
		s.Release(ctx, "a", 1),
		s.PutInbound(ctx, "a", 7),
		s.DeleteSubscription(ctx, "a", "x/#"),
		s.SetRetained(ctx, "r", &store.Message{Subject: []byte("r"), Payload: []byte("v"), Retain: true}),
		s.Sync(ctx),
		s.AckInflight(ctx, "a", 1),
		s.DeleteSession(ctx, "a"),
	} {
		if e != nil {
			f.Fatal(e)
		}
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(dir, filestore.LogName))
	if err != nil {
		f.Fatal(err)
	}
	v1, err := os.ReadFile("testdata/v1.log")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log)
	f.Add(log[:len(log)-5])
	f.Add(log[:len(log)/2])
	f.Add(v1)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, filestore.LogName)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := filestore.Open(dir, filestore.Options{})
		if err != nil {
			if !errors.Is(err, filestore.ErrCorrupt) {
				t.Fatalf("refused without ErrCorrupt: %v", err)
			}
			if s, err = filestore.Open(dir, filestore.Options{Repair: true}); err != nil {
				t.Fatalf("repair failed: %v", err)
			}
		}
		before := dump(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = filestore.Open(dir, filestore.Options{})
		if err != nil {
			t.Fatalf("a recovered log does not open: %v", err)
		}
		defer s.Close()
		if after := dump(t, s); after != before {
			t.Fatalf("state changed across a reopen:\n%s\n%s", before, after)
		}
	})
}
