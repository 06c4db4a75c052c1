package filestore

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/store"
)

// Compaction rewrites the log as the live state, off the commit path:
//
//  1. The committer, when it cuts a commit group (s.mu held, no Begin/End
//     bracket open), also takes a snapshot of the index: the records by
//     reference (stored records are immutable). That group goes to the
//     old log as usual; the old log's size after it is where the snapshot
//     stands.
//  2. A compactor goroutine encodes the snapshot into a temporary file,
//     then copies the commit groups the old log received since (read
//     while the committer keeps appending), until less than catchUpSlack
//     is left, and fdatasyncs.
//  3. The committer, between two commits, copies the last groups,
//     fdatasyncs, renames the file over the log and syncs the directory.
//     Only this step holds commits up, and it copies what arrived since
//     the compactor's last pass.

// catchUpSlack is how much of the old log the compactor leaves for the
// committer's final copy.
const catchUpSlack = 256 << 10

// compaction is one rewrite in progress. The compactor goroutine owns it
// until it reports done; the committer after.
type compaction struct {
	snap     *store.Snapshot // the index when it was taken
	ticket   uint64          // writes the snapshot covers
	old      *os.File        // the log being replaced
	from     int64           // old log size the snapshot stands at
	f        *os.File        // the new log, at path + ".tmp"
	size     int64           // bytes written to f
	snapSize int64           // of which the snapshot
	copied   int64           // old log bytes f holds (from..copied)
	started  time.Time
	stall    time.Duration // the committer's share (snapshot, finish)
	err      error
	abort    atomic.Bool
}

// snapshotLocked takes the index's state for a compaction: references
// only (store.Memory.Snapshot), the records are built by the compactor.
// s.mu held (and the bracket lock), so the snapshot and the log agree.
func (s *Store) snapshotLocked() *store.Snapshot {
	snap, err := s.mem.Snapshot()
	if err != nil {
		return nil
	}
	return snap
}

// startCompaction runs the compactor for a snapshot taken at ticket.
// Committer only, right after the group cut with the snapshot is
// committed (s.size is where it stands).
func (s *Store) startCompaction(snap *store.Snapshot, ticket uint64) {
	c := &compaction{snap: snap, ticket: ticket, old: s.f, from: s.size, copied: s.size, started: time.Now()}
	s.comp = c
	go s.compactor(c)
}

// compactor writes the snapshot and catches up with the old log, then
// tells the committer. Its own goroutine.
func (s *Store) compactor(c *compaction) {
	err := s.writeSnapshot(c)
	for err == nil {
		end := s.committed.Load()
		if end-c.copied < catchUpSlack {
			break
		}
		err = s.copyOld(c, end)
	}
	if err == nil {
		err = fdatasync(c.f)
	}
	c.err = err
	s.mu.Lock()
	s.compactDone = true
	s.cond.Signal()
	s.mu.Unlock()
}

// writeSnapshot encodes the snapshot into a new temporary file, in
// chunks, with a commit record at its end.
func (s *Store) writeSnapshot(c *compaction) error {
	if h := s.compactHook; h != nil {
		h()
	}
	f, err := os.OpenFile(filepath.Join(s.dir, LogName+".tmp"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	c.f = f
	var e enc
	flush := func() error {
		n, err := f.Write(e.b)
		c.size += int64(n)
		e.b = e.b[:0]
		return err
	}
	err = c.snap.Load(context.Background(), func(r store.Record) error {
		encodeRecord(&e, r)
		if len(e.b) < 1<<20 {
			return nil
		}
		if c.abort.Load() {
			return errCompactionAborted
		}
		return flush()
	})
	c.snap = nil // let the GC have it
	if err != nil {
		return err
	}
	at := e.begin(opCommit)
	e.uint(c.ticket)
	e.end(at)
	if err := flush(); err != nil {
		return err
	}
	c.snapSize = c.size
	return nil
}

// copyOld appends the old log's bytes [c.copied, end) to the new one:
// whole commit groups, already durable in the old log.
func (s *Store) copyOld(c *compaction, end int64) error {
	if end <= c.copied {
		return nil
	}
	if c.abort.Load() {
		return errCompactionAborted
	}
	n, err := io.Copy(c.f, io.NewSectionReader(c.old, c.copied, end-c.copied))
	c.copied += n
	c.size += n
	return err
}

// finishCompaction puts the new log in place once the compactor is done:
// the final copy, fdatasync, rename, directory sync. Committer only,
// between commits.
func (s *Store) finishCompaction() {
	began := time.Now()
	c := s.comp
	s.comp = nil
	err := c.err
	if err == nil {
		err = s.copyOld(c, s.size)
	}
	if err == nil {
		err = fdatasync(c.f)
	}
	path := filepath.Join(s.dir, LogName)
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		s.dropCompaction(c)
		if !errors.Is(err, errCompactionAborted) {
			s.log.Error("filestore: compaction failed; the log keeps growing", "err", err)
		}
		s.liveSize = s.size // do not retry at once
		return
	}
	before := s.size
	s.f = c.f
	s.size = c.size
	s.liveSize = c.snapSize
	s.committed.Store(s.size)
	// Closing the replaced log frees its blocks (tens of milliseconds for
	// a large file on ext4): not on the commit path.
	go func() { _ = c.old.Close() }()
	c.stall += time.Since(began)
	s.mu.Lock()
	s.stats.Compacted++
	s.stats.Bytes = s.size
	s.stats.CompactStall = max(s.stats.CompactStall, c.stall)
	s.mu.Unlock()
	s.log.Info("filestore: compacted the log", "before_bytes", before, "after_bytes", s.size,
		"snapshot_bytes", c.snapSize, "took", time.Since(c.started), "commit_stall", c.stall)
}

// dropCompaction removes an unfinished new log.
func (s *Store) dropCompaction(c *compaction) {
	if c.f != nil {
		_ = c.f.Close()
		_ = os.Remove(filepath.Join(s.dir, LogName+".tmp"))
	}
}

// abortCompaction stops a running compaction and waits for its
// goroutine. Committer only, at Close.
func (s *Store) abortCompaction() {
	c := s.comp
	if c == nil {
		return
	}
	c.abort.Store(true)
	s.mu.Lock()
	for !s.compactDone {
		s.cond.Wait()
	}
	s.compactDone = false
	s.mu.Unlock()
	s.comp = nil
	s.dropCompaction(c)
	if c.err != nil && !errors.Is(c.err, errCompactionAborted) {
		s.log.Error("filestore: compaction failed", "err", c.err)
	}
}

// encodeRecord writes the record that recreates r.
func encodeRecord(e *enc, r store.Record) {
	switch r.Kind {
	case store.KindSession:
		at := e.begin(opSaveSession)
		e.session(r.Session)
		e.end(at)
	case store.KindInflight:
		at := e.begin(opPutInflight)
		e.string(r.ClientID)
		e.inflight(r.Inflight)
		e.end(at)
	case store.KindInbound:
		at := e.begin(opPutInbound)
		e.string(r.ClientID)
		e.uint(uint64(r.Inbound))
		e.end(at)
	case store.KindRetained:
		at := e.begin(opSetRetained)
		key := r.Key
		if key == "" {
			key = string(r.Retained.Subject)
		}
		e.string(key)
		e.bool(true)
		e.message(r.Retained)
		e.end(at)
	}
}
