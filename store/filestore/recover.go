package filestore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/busbar/busbar/store"
)

// recover replays the log into s.mem, cutting a torn tail (or, with
// Repair, a corrupt rest). Open only.
func (s *Store) recover() error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	total := st.Size()
	r := bufio.NewReaderSize(s.f, 256<<10)
	var (
		off, committed int64 // read so far; end of the last complete group
		n              int   // records applied
		hdr            [headerSize]byte
		group          [][]byte // a group's records, applied at its commit record
		badWhy         string
		torn           bool
	)
	for off < total {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			torn, badWhy = true, "a record header is cut short"
			break
		}
		length := binary.BigEndian.Uint32(hdr[:4])
		sum := binary.BigEndian.Uint32(hdr[4:])
		end := off + headerSize + int64(length)
		if length == 0 || length > maxRecord {
			badWhy, torn = fmt.Sprintf("a record length of %d is impossible", length), false
			break
		}
		if end > total {
			torn, badWhy = true, "the last record is cut short"
			break
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			torn, badWhy = true, "the last record is cut short"
			break
		}
		if crc32.Checksum(body, crcTable) != sum {
			// A bad last record is a write no fsync completed: a torn tail.
			torn, badWhy = end == total, "a record fails its checksum"
			break
		}
		off = end
		if body[0] != opCommit {
			group = append(group, body)
			continue
		}
		for _, b := range group {
			if err := s.apply(b); err != nil {
				return fmt.Errorf("%w: %s: a record before byte %d does not decode (%v); open it with repair (busbar --store_repair) to cut the log at byte %d",
					ErrCorrupt, filepath.Join(s.dir, LogName), off, err, committed)
			}
			n++
		}
		group = group[:0]
		committed = off
	}
	if badWhy == "" && len(group) > 0 {
		torn, badWhy = true, "the last commit group has no commit record"
	}
	off = committed
	s.size = off
	if off == total {
		return nil
	}
	dropped := total - off
	if !torn && !s.opts.Repair {
		return fmt.Errorf("%w: %s: at byte %d of %d, after %d good records (%s); open it with repair (busbar --store_repair) to cut it there, dropping %d bytes",
			ErrCorrupt, filepath.Join(s.dir, LogName), off, total, n, badWhy, dropped)
	}
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("filestore: cutting the log at byte %d: %w", off, err)
	}
	if err := fdatasync(s.f); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	what := "cut a torn tail"
	if !torn {
		what = "repaired a corrupt log"
	}
	s.log.Warn("filestore: "+what, "log", filepath.Join(s.dir, LogName), "reason", badWhy,
		"kept_records", n, "kept_bytes", off, "dropped_bytes", dropped)
	return nil
}

// seekEnd positions the log for appending. Open only.
func (s *Store) seekEnd() error {
	_, err := s.f.Seek(s.size, io.SeekStart)
	return err
}

// apply replays one record body into the in-memory state.
func (s *Store) apply(body []byte) error {
	ctx := context.Background()
	d := &dec{b: body[1:]}
	var err error
	switch body[0] {
	case opSaveSession:
		x := d.session()
		if d.err == nil {
			err = s.mem.SaveSession(ctx, x)
		}
	case opDeleteSession:
		id := d.string()
		if d.err == nil {
			err = s.mem.DeleteSession(ctx, id)
		}
	case opPutInflight:
		id, f := d.string(), d.inflight()
		if d.err == nil {
			err = s.mem.PutInflight(ctx, id, f)
		}
	case opRelease:
		id, seq := d.string(), d.uint()
		if d.err == nil {
			err = s.mem.Release(ctx, id, seq)
		}
	case opAck:
		id, seq := d.string(), d.uint()
		if d.err == nil {
			err = s.mem.AckInflight(ctx, id, seq)
		}
	case opPutInbound:
		id, pid := d.string(), d.uint()
		if d.err == nil {
			err = s.mem.PutInbound(ctx, id, uint16(pid))
		}
	case opDeleteInbound:
		id, pid := d.string(), d.uint()
		if d.err == nil {
			err = s.mem.DeleteInbound(ctx, id, uint16(pid))
		}
	case opSetRetained:
		subject := d.string()
		var m *store.Message
		if d.bool() {
			x := d.message()
			m = &x
		}
		if d.err == nil {
			err = s.mem.SetRetained(ctx, subject, m)
		}
	default:
		return fmt.Errorf("unknown operation %d", body[0])
	}
	if d.err != nil {
		return d.err
	}
	if err == nil && len(d.b) != 0 {
		return errors.New("trailing bytes")
	}
	return err
}

// compact rewrites the log as the live state: snapshot the index under
// s.mu (the writes it covers are dropped from the pending batch, the
// snapshot has them), write it to a temporary file, sync, rename over the
// log, sync the directory. Committer only.
func (s *Store) compact() error {
	start := time.Now()
	var e enc
	s.mu.Lock()
	err := s.mem.Load(context.Background(), func(r store.Record) error {
		encodeRecord(&e, r)
		return nil
	})
	ticket := s.written
	at := e.begin(opCommit)
	e.uint(ticket)
	e.end(at)
	dropped := s.pending.b
	s.pending.b = nil
	s.mu.Unlock()
	if err != nil {
		s.restorePending(dropped)
		return err
	}
	path := filepath.Join(s.dir, LogName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err == nil {
		if _, err = f.Write(e.b); err == nil {
			err = fdatasync(f)
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err == nil {
			err = syncDir(s.dir)
		}
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}
	if err != nil {
		s.restorePending(dropped)
		return err
	}
	old := s.f
	s.f = f
	// Closing the replaced log frees its blocks (tens of milliseconds for
	// a large file on ext4): not on the commit path.
	go func() { _ = old.Close() }()
	before := s.size
	s.size = int64(len(e.b))
	s.mu.Lock()
	s.liveSize = s.size
	s.durable = max(s.durable, ticket)
	s.stats.Compacted++
	s.stats.Bytes = s.size
	fns := s.release(nil)
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	s.log.Info("filestore: compacted the log", "before_bytes", before, "after_bytes", s.size, "took", time.Since(start))
	return nil
}

// restorePending puts back records a failed compaction took out.
func (s *Store) restorePending(b []byte) {
	s.mu.Lock()
	s.pending.b = append(b, s.pending.b...)
	s.mu.Unlock()
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
