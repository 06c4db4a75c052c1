// Package filestore is busbar's durable store.Store: an append-only log
// in one directory, group-committed (one fdatasync serves every write
// queued while the previous one ran), replayed at Open into an in-memory
// index (a store.Memory), and compacted by rewriting the live state when
// the log has grown well past it.
//
// Why a log of our own: the workload is small records written once and
// deleted soon after (an in-flight QoS 1/2 message lives until its ack),
// every one of which must be on disk before the broker acknowledges it.
// Measured in bench/cmd/storebench (RESULTS.md there): an append-only log
// with group commit needs one sequential write and one fdatasync per
// group; bbolt (B-tree, copy-on-write pages) pays two fsyncs and page
// rewrites per transaction and ran at about half the log's rate; pebble
// (LSM with a WAL) ties a preallocated log at 1 and 16 writers (the log
// won 1.37x at 128) but adds 26 linked modules, cgo and ~12 MiB to every
// embedder's binary for state that fits in memory anyway. The log keeps
// the store a leaf with no dependencies. This log grows its file (each
// fdatasync also records the new size); preallocating it is the measured
// next step.
//
// Durability: write calls return once the record is ordered in the
// commit queue (the store is a store.Grouped); Durable and Sync report
// when it is on disk. Recovery: Open replays the log before anything
// else runs; a torn tail (a last record cut short or failing its CRC,
// which no fsync ever completed) is cut back to the last good record
// with one log line; a bad record followed by more data is corruption:
// Open refuses with ErrCorrupt unless Options.Repair, which cuts the log
// there and says what it dropped. A corrupt store never crashes the
// broker and never silently starts empty.
package filestore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/store"
)

// LogName is the log file in the store directory.
const LogName = "busbar.log"

// Options tune a Store. The zero value is the default.
type Options struct {
	// SyncInterval is the longest a write waits for others to share its
	// fdatasync (a maximum batch delay). 0: commit as soon as the
	// previous commit is done, which groups whatever arrived meanwhile.
	SyncInterval time.Duration
	// Repair cuts a corrupt log at its first bad record instead of
	// refusing to open it.
	Repair bool
	// CompactMin is the log size below which it is never compacted
	// (default 64 MiB).
	CompactMin int64
	// Logger receives recovery and compaction lines. nil: discard.
	Logger *slog.Logger
}

// Store is the durable store. Safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger
	mem  *store.Memory // the live state, the index Load replays

	atomic sync.RWMutex // Begin/End hold it shared; the committer takes it to cut a group

	mu      sync.Mutex // guards the fields up to cond and orders writes with mem
	cond    *sync.Cond // signalled when there is work for the committer
	pending enc        // records not yet written
	written uint64     // writes ordered so far
	durable uint64     // writes on disk
	waiters []waiter
	closed  bool
	failed  error // a write or sync failed: the store refuses everything after

	compactDone bool // the compactor finished (successfully or not)

	// Committer goroutine only.
	f           *os.File
	size        int64 // bytes in the log
	liveSize    int64 // bytes of the last compacted snapshot
	spare       []byte
	wantCompact bool        // snapshot at the next group cut
	comp        *compaction // running, or nil
	compactHook func()      // tests: runs as the compactor starts

	committed atomic.Int64 // the log's durable size, for the compactor

	done  chan struct{}
	stats Stats
}

type waiter struct {
	ticket uint64
	fn     func(error)
}

// Stats are counters for monitoring.
type Stats struct {
	Commits   int64         // fdatasyncs
	Records   int64         // records written
	Bytes     int64         // log size now
	LastSync  time.Duration // duration of the last fdatasync
	Compacted int64         // compactions
	// CompactStall is the longest the commit goroutine spent on one
	// compaction (taking the snapshot, then putting the new log in place):
	// what a compaction adds to an acknowledgement's wait.
	CompactStall time.Duration
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Grouped = (*Store)(nil)
)

// Open opens (or creates) the store in dir and replays it.
func Open(dir string, o Options) (*Store, error) {
	if o.CompactMin <= 0 {
		o.CompactMin = 64 << 20
	}
	s := &Store{dir: dir, opts: o, log: o.Logger, mem: store.NewMemory(), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.cond = sync.NewCond(&s.mu)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	path := filepath.Join(dir, LogName)
	_ = os.Remove(path + ".tmp") // an unfinished compaction
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	s.f = f
	err = s.recover()
	if err == nil {
		err = s.seekEnd()
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	// The live state's size is not known until a snapshot is written:
	// a log past CompactMin is compacted at the first commit, so a store
	// that restarts often does not grow to 4x its last log each time.
	s.liveSize = 0
	go s.commitLoop()
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// write orders one record: encode appends it to the pending batch and
// apply changes the in-memory state, both under s.mu so the log and the
// index agree on the order.
func (s *Store) write(encode func(e *enc), apply func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return store.ErrClosed
	case s.failed != nil:
		return s.failed
	}
	encode(&s.pending)
	if err := apply(); err != nil {
		return err
	}
	s.written++
	s.stats.Records++
	s.cond.Signal()
	return nil
}

// SaveSession stores or replaces a session.
func (s *Store) SaveSession(ctx context.Context, x *store.Session) error {
	return s.write(func(e *enc) {
		at := e.begin(opSaveSession)
		e.session(x)
		e.end(at)
	}, func() error { return s.mem.SaveSession(ctx, x) })
}

// PutSubscription adds or replaces (same Filter) one subscription of a
// session: one record, whatever the session holds.
func (s *Store) PutSubscription(ctx context.Context, id string, sub *store.Subscription) error {
	return s.write(func(e *enc) {
		at := e.begin(opPutSub)
		e.string(id)
		e.subscription(sub)
		e.end(at)
	}, func() error { return s.mem.PutSubscription(ctx, id, sub) })
}

// DeleteSubscription removes one subscription of a session.
func (s *Store) DeleteSubscription(ctx context.Context, id, filter string) error {
	return s.write(func(e *enc) {
		at := e.begin(opDeleteSub)
		e.string(id)
		e.string(filter)
		e.end(at)
	}, func() error { return s.mem.DeleteSubscription(ctx, id, filter) })
}

// DeleteSession removes a session and everything stored for it.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return s.write(func(e *enc) {
		at := e.begin(opDeleteSession)
		e.string(id)
		e.end(at)
	}, func() error { return s.mem.DeleteSession(ctx, id) })
}

// PutInflight adds or replaces (same Seq) an outbound message.
func (s *Store) PutInflight(ctx context.Context, id string, f *store.Inflight) error {
	return s.write(func(e *enc) {
		at := e.begin(opPutInflight)
		e.string(id)
		e.inflight(f)
		e.end(at)
	}, func() error { return s.mem.PutInflight(ctx, id, f) })
}

// Release marks an in-flight QoS 2 message as past PUBREC.
func (s *Store) Release(ctx context.Context, id string, seq uint64) error {
	return s.write(func(e *enc) {
		at := e.begin(opRelease)
		e.string(id)
		e.uint(seq)
		e.end(at)
	}, func() error { return s.mem.Release(ctx, id, seq) })
}

// AckInflight removes an outbound message.
func (s *Store) AckInflight(ctx context.Context, id string, seq uint64) error {
	return s.write(func(e *enc) {
		at := e.begin(opAck)
		e.string(id)
		e.uint(seq)
		e.end(at)
	}, func() error { return s.mem.AckInflight(ctx, id, seq) })
}

// PutInbound records a QoS 2 packet id awaiting PUBREL.
func (s *Store) PutInbound(ctx context.Context, id string, pid uint16) error {
	return s.write(func(e *enc) {
		at := e.begin(opPutInbound)
		e.string(id)
		e.uint(uint64(pid))
		e.end(at)
	}, func() error { return s.mem.PutInbound(ctx, id, pid) })
}

// DeleteInbound forgets a QoS 2 packet id.
func (s *Store) DeleteInbound(ctx context.Context, id string, pid uint16) error {
	return s.write(func(e *enc) {
		at := e.begin(opDeleteInbound)
		e.string(id)
		e.uint(uint64(pid))
		e.end(at)
	}, func() error { return s.mem.DeleteInbound(ctx, id, pid) })
}

// SetRetained stores or (nil or empty payload) deletes a retained message.
func (s *Store) SetRetained(ctx context.Context, subject string, m *store.Message) error {
	return s.write(func(e *enc) {
		at := e.begin(opSetRetained)
		e.string(subject)
		e.bool(m != nil && len(m.Payload) > 0)
		if m != nil && len(m.Payload) > 0 {
			e.message(m)
		}
		e.end(at)
	}, func() error { return s.mem.SetRetained(ctx, subject, m) })
}

// Load replays the live state (the in-memory index, which includes
// writes not yet durable).
func (s *Store) Load(ctx context.Context, fn func(store.Record) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return store.ErrClosed
	}
	return s.mem.Load(ctx, fn)
}

// Durable runs fn once every write ordered before the call is on disk,
// on the committer goroutine (or at once when they already are). fn must
// not block.
func (s *Store) Durable(fn func(error)) {
	s.mu.Lock()
	switch {
	case s.failed != nil:
		err := s.failed
		s.mu.Unlock()
		fn(err)
		return
	case s.durable >= s.written:
		s.mu.Unlock()
		fn(nil)
		return
	case s.closed:
		s.mu.Unlock()
		fn(store.ErrClosed)
		return
	}
	s.waiters = append(s.waiters, waiter{ticket: s.written, fn: fn})
	s.cond.Signal()
	s.mu.Unlock()
}

// Begin opens a bracket of writes committed together (store.Grouped).
func (s *Store) Begin() { s.atomic.RLock() }

// End closes a bracket opened by Begin.
func (s *Store) End() { s.atomic.RUnlock() }

// Sync blocks until every write ordered before it is on disk.
func (s *Store) Sync(ctx context.Context) error {
	ch := make(chan error, 1)
	s.Durable(func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close commits what is pending and closes the log. Later calls return
// store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	err := s.failed
	s.mu.Unlock()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	_ = s.mem.Close()
	return err
}

// commitLoop writes and syncs pending records in groups, and hands
// compactions to a compactor goroutine (compact.go).
func (s *Store) commitLoop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.pending.b) == 0 && len(s.waiters) == 0 && !s.closed && !s.compactDone && !s.wantCompact {
			s.cond.Wait()
		}
		if s.compactDone {
			s.compactDone = false
			s.mu.Unlock()
			s.finishCompaction()
			continue
		}
		if len(s.pending.b) == 0 && s.closed {
			s.mu.Unlock()
			s.abortCompaction()
			s.mu.Lock()
			fns := s.release(nil)
			s.mu.Unlock()
			for _, fn := range fns {
				fn()
			}
			return
		}
		if d := s.opts.SyncInterval; d > 0 && !s.closed {
			s.mu.Unlock()
			time.Sleep(d) // let more writes join this group
			s.mu.Lock()
		}
		s.mu.Unlock()
		buf, ticket, snap, snapTook := s.cutGroup()
		err := s.commit(buf)
		s.spare = buf[:0]
		if cap(s.spare) > 4<<20 {
			s.spare = nil
		}
		s.mu.Lock()
		if err != nil && s.failed == nil {
			s.failed = fmt.Errorf("filestore: %w", err)
			s.log.Error("filestore: write failed; the store refuses further writes", "err", err)
		}
		if err == nil {
			s.durable = ticket
		}
		fns := s.release(s.failed)
		s.stats.Bytes = s.size
		failed := s.failed != nil
		s.mu.Unlock()
		s.committed.Store(s.size)
		for _, fn := range fns {
			fn()
		}
		switch {
		case failed:
		case snap != nil:
			s.startCompaction(snap, ticket)
			s.comp.stall = snapTook
		case s.comp == nil && s.size > s.opts.CompactMin && s.size > 4*s.liveSize:
			s.wantCompact = true // the snapshot is taken at the next cut
		}
	}
}

// cutGroup takes the pending records as one commit group, ended by its
// commit record, where no Begin/End bracket is open; with a compaction
// wanted, a snapshot of the index too. Committer only.
func (s *Store) cutGroup() (buf []byte, ticket uint64, snap *store.Snapshot, snapTook time.Duration) {
	s.atomic.Lock()
	s.mu.Lock()
	buf, ticket = s.pending.b, s.written
	s.pending.b = s.spare[:0]
	if s.wantCompact {
		t := time.Now()
		snap, s.wantCompact = s.snapshotLocked(), false
		snapTook = time.Since(t)
	}
	s.mu.Unlock()
	s.atomic.Unlock()
	if len(buf) > 0 {
		e := enc{b: buf}
		m := e.begin(opCommit)
		e.uint(ticket)
		e.end(m)
		buf = e.b
	}
	return buf, ticket, snap, snapTook
}

// release takes the waiters whose writes are durable (all of them when
// err is set) and returns their callbacks. s.mu held.
func (s *Store) release(err error) []func() {
	var fns []func()
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if err != nil || w.ticket <= s.durable || s.closed && len(s.pending.b) == 0 {
			fn, e := w.fn, err
			fns = append(fns, func() { fn(e) })
			continue
		}
		keep = append(keep, w)
	}
	clear(s.waiters[len(keep):])
	s.waiters = keep
	return fns
}

// commit appends buf to the log and makes it durable. Committer only.
func (s *Store) commit(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.f.Write(buf); err != nil {
		return err
	}
	start := time.Now()
	if err := fdatasync(s.f); err != nil {
		return err
	}
	d := time.Since(start)
	s.size += int64(len(buf))
	s.mu.Lock()
	s.stats.Commits++
	s.stats.LastSync = d
	s.mu.Unlock()
	return nil
}
