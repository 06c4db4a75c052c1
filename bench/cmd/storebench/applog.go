package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
)

// appLog is the minimal append-only log: segment files named by sequence
// number, records appended by one committer goroutine (one pwrite and one
// fdatasync per group), an in-memory index of live keys per segment, and a
// segment dropped once none of its puts is live. A record that stayed live
// for long would pin its segment; a real store would copy such records
// forward, this benchmark's acks come back within -lag ops.
//
// Record: crc32c(4) | body length(4) | segment sequence(8) | body, where the
// body is kind(1: put, 2: delete) | key length(2) | key | value, and the crc
// covers sequence and body. Replay stops at the first record whose length,
// crc or sequence does not match, so zero fill and the stale tail of a
// recycled segment both read as the end of the log.
type appLog struct {
	dir      string
	prealloc bool // zero-fill segments once and recycle them

	c      *committer
	f      *os.File
	fd     int
	seq    uint64
	off    int64
	buf    []byte
	live   map[string]uint64 // key -> segment sequence of its put
	counts map[uint64]int    // segment sequence -> live puts in it
	old    []uint64          // sealed segments not yet dropped, oldest first
	spare  string            // an emptied segment kept for reuse (prealloc)

	syncs atomic.Uint64
}

const (
	recHdr      = 16
	kindPut     = 1
	kindDelete  = 2
	segNameFmt  = "%016d.log"
	spareSuffix = ".spare"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Segment size, and how early to roll so that a group (at most a few
// hundred records) stays inside the preallocated part. Variables so the
// test can roll segments quickly.
var (
	segSize   int64 = 16 << 20
	segMargin int64 = 256 << 10
)

func openAppLog(dir string, prealloc bool) (store, error) {
	l := &appLog{
		dir:      dir,
		prealloc: prealloc,
		live:     make(map[string]uint64),
		counts:   make(map[uint64]int),
	}
	// Recover whatever is there (nothing, in a fresh directory), then start
	// a new segment after the last one.
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for _, seq := range segs {
		if err := replaySegment(dir, seq, func(kind byte, key, _ []byte) {
			l.apply(kind, key, seq)
		}); err != nil {
			return nil, err
		}
		l.seq = seq
	}
	l.old = segs
	if err := l.dropEmptyPrefix(); err != nil {
		return nil, err
	}
	if err := l.newSegment(); err != nil {
		return nil, err
	}
	l.c = newCommitter(l.flush)
	return l, nil
}

func (l *appLog) segPath(seq uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf(segNameFmt, seq))
}

// apply updates the live index for one record in segment seq.
func (l *appLog) apply(kind byte, key []byte, seq uint64) {
	if prev, ok := l.live[string(key)]; ok {
		l.counts[prev]--
		delete(l.live, string(key))
	}
	if kind == kindPut {
		l.live[string(key)] = seq
		l.counts[seq]++
	}
}

// newSegment seals the current segment (if any) and makes the next one
// current: a recycled spare, a zero-filled new file, or an empty new file.
func (l *appLog) newSegment() error {
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			return err
		}
		l.f = nil
		l.old = append(l.old, l.seq)
		if err := l.dropEmptyPrefix(); err != nil {
			return err
		}
	}
	l.seq++
	path := l.segPath(l.seq)
	var f *os.File
	var err error
	switch {
	case l.prealloc && l.spare != "":
		if err = os.Rename(l.spare, path); err != nil {
			return err
		}
		l.spare = ""
		f, err = os.OpenFile(path, os.O_RDWR, 0o600)
	case l.prealloc:
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			err = zeroFill(f, segSize)
			l.syncs.Add(1)
		}
	default:
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return err
	}
	l.f, l.fd, l.off = f, int(f.Fd()), 0
	return l.syncDir()
}

// dropEmptyPrefix drops sealed segments, oldest first, while the oldest
// has no live put. Only a prefix may go: a younger segment may hold the
// delete records that keep an older segment's puts dead on replay.
func (l *appLog) dropEmptyPrefix() error {
	for len(l.old) > 0 && l.counts[l.old[0]] == 0 {
		if err := l.dropSegment(l.old[0]); err != nil {
			return err
		}
		l.old = l.old[1:]
	}
	return nil
}

// dropSegment removes an emptied sealed segment, or keeps it as the spare.
func (l *appLog) dropSegment(seq uint64) error {
	delete(l.counts, seq)
	path := l.segPath(seq)
	if l.prealloc && l.spare == "" {
		l.spare = path + spareSuffix
		return os.Rename(path, l.spare)
	}
	return os.Remove(path)
}

func (l *appLog) syncDir() error {
	d, err := os.Open(l.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	l.syncs.Add(1)
	return d.Sync()
}

func zeroFill(f *os.File, size int64) error {
	zero := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			return err
		}
	}
	return syscall.Fdatasync(int(f.Fd()))
}

func appendRecord(buf []byte, seq uint64, kind byte, key, val []byte) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, recHdr)...)
	buf = append(buf, kind)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(key)))
	buf = append(buf, key...)
	buf = append(buf, val...)
	h := buf[start:]
	binary.BigEndian.PutUint32(h[4:], uint32(len(h)-recHdr))
	binary.BigEndian.PutUint64(h[8:], seq)
	binary.BigEndian.PutUint32(h[0:], crc32.Checksum(h[8:], castagnoli))
	return buf
}

// flush is the committer's group: encode, one write, one fdatasync; then
// the index, and a new segment when this one is full.
func (l *appLog) flush(group []*request) error {
	if l.f == nil {
		return errors.New("applog: no current segment after an earlier error")
	}
	buf := l.buf[:0]
	for _, r := range group {
		if r.put != nil {
			buf = appendRecord(buf, l.seq, kindPut, r.put.key, r.put.val)
		}
		if r.del != nil {
			buf = appendRecord(buf, l.seq, kindDelete, r.del, nil)
		}
	}
	l.buf = buf
	if _, err := l.f.WriteAt(buf, l.off); err != nil {
		return err
	}
	l.off += int64(len(buf))
	l.syncs.Add(1)
	if err := syscall.Fdatasync(l.fd); err != nil {
		return err
	}
	for _, r := range group {
		if r.put != nil {
			l.apply(kindPut, r.put.key, l.seq)
		}
		if r.del != nil {
			l.apply(kindDelete, r.del, l.seq)
		}
	}
	// Sealed segments whose puts have all been deleted go away. The delete
	// records that emptied them are in this or a younger segment and are
	// durable now, so dropping them loses nothing on replay.
	if err := l.dropEmptyPrefix(); err != nil {
		return err
	}
	if l.off >= segSize-segMargin {
		return l.newSegment()
	}
	return nil
}

func (l *appLog) Write(put *rec, del []byte) error { return l.c.submit(put, del) }

// Settle is a checkpoint: with no live record left, start a fresh segment,
// which drops the current one (as a spare, with prealloc).
func (l *appLog) Settle() error {
	l.c.close()
	if len(l.live) != 0 {
		return fmt.Errorf("applog: %d live records at settle", len(l.live))
	}
	if err := l.newSegment(); err != nil {
		return err
	}
	l.c = newCommitter(l.flush)
	return nil
}

func (l *appLog) Close() error {
	l.c.close()
	return l.f.Close()
}

func (l *appLog) Counters() (groups, fsyncs uint64, exact bool) {
	return l.c.groups.Load(), l.syncs.Load(), true
}

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		var seq uint64
		if strings.HasSuffix(e.Name(), ".log") {
			if _, err := fmt.Sscanf(e.Name(), segNameFmt, &seq); err == nil {
				segs = append(segs, seq)
			}
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// replaySegment calls fn for every valid record of segment seq, in order.
func replaySegment(dir string, seq uint64, fn func(kind byte, key, val []byte)) error {
	data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf(segNameFmt, seq)))
	if err != nil {
		return err
	}
	for len(data) >= recHdr {
		n := int(binary.BigEndian.Uint32(data[4:]))
		if n < 3 || n > len(data)-recHdr || binary.BigEndian.Uint64(data[8:]) != seq ||
			crc32.Checksum(data[8:recHdr+n], castagnoli) != binary.BigEndian.Uint32(data) {
			break
		}
		body := data[recHdr : recHdr+n]
		kl := int(binary.BigEndian.Uint16(body[1:]))
		if 3+kl > n {
			return errors.New("applog: bad key length")
		}
		fn(body[0], body[3:3+kl], body[3+kl:])
		data = data[recHdr+n:]
	}
	return nil
}

// countAppLog replays the directory and returns the number of live keys.
func countAppLog(dir string) (int, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return 0, err
	}
	live := map[string]bool{}
	for _, seq := range segs {
		err := replaySegment(dir, seq, func(kind byte, key, _ []byte) {
			if kind == kindPut {
				live[string(key)] = true
			} else {
				delete(live, string(key))
			}
		})
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	return len(live), nil
}
