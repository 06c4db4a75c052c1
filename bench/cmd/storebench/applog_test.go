package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestAppLogReplay writes puts and deletes across many segment rolls,
// closes without a checkpoint, and checks that a replay of the directory
// finds exactly the records still live, for both segment modes; then it
// tears the tail of the newest segment and checks replay stops cleanly.
func TestAppLogReplay(t *testing.T) {
	defer func(s, m int64) { segSize, segMargin = s, m }(segSize, segMargin)
	segSize, segMargin = 64<<10, 8<<10
	for _, prealloc := range []bool{false, true} {
		t.Run(fmt.Sprint("prealloc=", prealloc), func(t *testing.T) {
			dir := t.TempDir()
			st, err := openAppLog(dir, prealloc)
			if err != nil {
				t.Fatal(err)
			}
			l := st.(*appLog)
			key := func(i int) []byte {
				k := make([]byte, keyLen)
				copy(k, "storebench-t0000")
				binary.BigEndian.PutUint16(k[16:], uint16(i))
				return k
			}
			val := makeValue(1)
			want := map[string]bool{}
			// Every 97th record is never acked, so old segments stay pinned
			// while younger ones empty out: replay must still see them live.
			for i := 1; i <= 3000; i++ {
				var del []byte
				if i > 1 && (i-1)%97 != 0 {
					del = key(i - 1)
					delete(want, string(del))
				}
				if err := l.Write(&rec{key: key(i), val: val}, del); err != nil {
					t.Fatal(err)
				}
				want[string(key(i))] = true
			}
			if l.seq < 5 {
				t.Fatalf("only %d segments: the test did not roll", l.seq)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := countAppLog(dir)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(want) || len(l.live) != len(want) {
				t.Fatalf("replay found %d live, index has %d, want %d", n, len(l.live), len(want))
			}
			// Reopen recovers the same live set and carries on.
			st, err = openAppLog(dir, prealloc)
			if err != nil {
				t.Fatal(err)
			}
			l = st.(*appLog)
			if len(l.live) != len(want) {
				t.Fatalf("reopen recovered %d live, want %d", len(l.live), len(want))
			}
			for k := range want {
				if err := l.Write(nil, []byte(k)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Settle(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := countAppLog(dir); err != nil || n != 0 {
				t.Fatalf("after deleting all: %d live, %v", n, err)
			}
			segs, _ := listSegments(dir)
			if len(segs) != 1 {
				t.Fatalf("after the checkpoint %d segments are left, want 1", len(segs))
			}
		})
	}
}

// TestAppLogTornTail checks that a half-written last record ends replay
// without an error and without losing the records before it.
func TestAppLogTornTail(t *testing.T) {
	dir := t.TempDir()
	st, err := openAppLog(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	l := st.(*appLog)
	for i := 0; i < 10; i++ {
		k := make([]byte, keyLen)
		k[17] = byte(i)
		if err := l.Write(&rec{key: k, val: makeValue(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	seq := l.seq
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf(segNameFmt, seq))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-50); err != nil {
		t.Fatal(err)
	}
	if n, err := countAppLog(dir); err != nil || n != 9 {
		t.Fatalf("torn tail: %d live, %v; want 9", n, err)
	}
}
