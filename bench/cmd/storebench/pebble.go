package main

import (
	"bytes"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// pebbleStore is pebble with its WAL; every write is applied with
// pebble.Sync. Syncs are counted exactly by wrapping pebble's vfs: fsyncs
// are all Sync/SyncData/fullSync SyncTo calls on any file (WAL, sstables,
// MANIFEST, directories); groups are the WAL syncs alone, each of which
// serves every batch that queued behind it in the commit pipeline.
type pebbleStore struct {
	db       *pebble.DB
	fs       *countingFS
	c        *committer
	settling bool
}

func openPebble(dir string) (*pebbleStore, error) {
	cfs := &countingFS{FS: vfs.Default}
	db, err := pebble.Open(dir, &pebble.Options{FS: cfs, Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	return &pebbleStore{db: db, fs: cfs}, nil
}

func pebbleBatch(b *pebble.Batch, put *rec, del []byte) error {
	if put != nil {
		if err := b.Set(put.key, put.val, nil); err != nil {
			return err
		}
	}
	if del != nil {
		return b.Delete(del, nil)
	}
	return nil
}

// pebble-sync: one Batch per op, applied with pebble.Sync by the caller.
type pebbleSync struct{ *pebbleStore }

func openPebbleSync(dir string) (store, error) {
	s, err := openPebble(dir)
	if err != nil {
		return nil, err
	}
	return pebbleSync{s}, nil
}

func (s pebbleSync) Write(put *rec, del []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := pebbleBatch(b, put, del); err != nil {
		return err
	}
	return s.db.Apply(b, pebble.Sync)
}

// pebble-committer: our committer, one Batch applied with pebble.Sync per group.
type pebbleCommitter struct{ *pebbleStore }

func openPebbleCommitter(dir string) (store, error) {
	s, err := openPebble(dir)
	if err != nil {
		return nil, err
	}
	s.c = newCommitter(func(group []*request) error {
		b := s.db.NewBatch()
		defer b.Close()
		for _, r := range group {
			if err := pebbleBatch(b, r.put, r.del); err != nil {
				return err
			}
		}
		return s.db.Apply(b, pebble.Sync)
	})
	return pebbleCommitter{s}, nil
}

func (s pebbleCommitter) Write(put *rec, del []byte) error { return s.c.submit(put, del) }

// Settle flushes the memtable and compacts the whole key space, so the
// deleted records and their tombstones are dropped.
func (s *pebbleStore) Settle() error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	return s.db.Compact([]byte{0}, bytes.Repeat([]byte{0xff}, keyLen+1), true)
}

func (s *pebbleStore) Close() error {
	if s.c != nil {
		s.c.close()
	}
	return s.db.Close()
}

func (s *pebbleStore) Counters() (groups, fsyncs uint64, exact bool) {
	return s.fs.walSyncs.Load(), s.fs.syncs.Load(), true
}

func countPebble(dir string) (int, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	fatalf("pebble: "+format, args...)
}

// countingFS counts the sync calls pebble makes on its files.
type countingFS struct {
	vfs.FS
	syncs    atomic.Uint64
	walSyncs atomic.Uint64
}

func (fs *countingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &countingFile{File: f, fs: fs, wal: strings.HasSuffix(name, ".log")}, nil
}

func (fs *countingFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname)
	return fs.wrap(newname, f, err)
}

type countingFile struct {
	vfs.File
	fs  *countingFS
	wal bool
}

func (f *countingFile) count() {
	f.fs.syncs.Add(1)
	if f.wal {
		f.fs.walSyncs.Add(1)
	}
}

func (f *countingFile) Sync() error {
	f.count()
	return f.File.Sync()
}

func (f *countingFile) SyncData() error {
	f.count()
	return f.File.SyncData()
}

func (f *countingFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if full {
		f.count()
	}
	return full, err
}
