package main

import (
	"path/filepath"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

var boltBucket = []byte("inflight")

// boltStore is bbolt with NoSync=false: every commit writes the dirty pages,
// fdatasyncs, writes the meta page and fdatasyncs again (2 syncs a commit,
// plus an fsync when the file grows), which is why fsyncs are reported as
// ≈ 2 × commits.
type boltStore struct {
	db      *bolt.DB
	commits atomic.Uint64
	lastTx  *bolt.Tx // touched only inside the write transaction
	c       *committer
}

func openBolt(dir string) (*boltStore, error) {
	db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, &bolt.Options{NoSync: false})
	if err != nil {
		return nil, err
	}
	s := &boltStore{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// countCommit counts tx once, however many batched functions run in it.
func (s *boltStore) countCommit(tx *bolt.Tx) {
	if tx != s.lastTx {
		s.lastTx = tx
		tx.OnCommit(func() { s.commits.Add(1) })
	}
}

func boltApply(b *bolt.Bucket, put *rec, del []byte) error {
	if put != nil {
		if err := b.Put(put.key, put.val); err != nil {
			return err
		}
	}
	if del != nil {
		return b.Delete(del)
	}
	return nil
}

// bbolt-batch: db.Batch, bbolt's built-in group commit.
type boltBatch struct{ *boltStore }

func openBoltBatch(dir string) (store, error) {
	s, err := openBolt(dir)
	if err != nil {
		return nil, err
	}
	return boltBatch{s}, nil
}

func (s boltBatch) Write(put *rec, del []byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		s.countCommit(tx)
		return boltApply(tx.Bucket(boltBucket), put, del)
	})
}

// bbolt-committer: our committer, one db.Update per group.
type boltCommitter struct{ *boltStore }

func openBoltCommitter(dir string) (store, error) {
	s, err := openBolt(dir)
	if err != nil {
		return nil, err
	}
	s.c = newCommitter(func(group []*request) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			s.countCommit(tx)
			b := tx.Bucket(boltBucket)
			for _, r := range group {
				if err := boltApply(b, r.put, r.del); err != nil {
					return err
				}
			}
			return nil
		})
	})
	return boltCommitter{s}, nil
}

func (s boltCommitter) Write(put *rec, del []byte) error { return s.c.submit(put, del) }

func (s *boltStore) Settle() error { return nil }

func (s *boltStore) Close() error {
	if s.c != nil {
		s.c.close()
	}
	return s.db.Close()
}

func (s *boltStore) Counters() (groups, fsyncs uint64, exact bool) {
	n := s.commits.Load()
	return n, 2 * n, false
}

func countBolt(dir string) (int, error) {
	db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(boltBucket).Stats().KeyN
		return nil
	})
	return n, err
}
