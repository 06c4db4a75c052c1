package filestore

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"

	"github.com/busbar/busbar/store"
)

// recover replays the log into s.mem, cutting a torn tail (or, with
// Repair, a corrupt rest). Open only.
//
// A torn tail is what a crash leaves: the end of the last write, cut
// short or never completed, with nothing valid after it. So at the first
// bad spot (a header cut short, an impossible length, a length past the
// end of the file, a failed checksum) the rest of the file is searched
// for a whole record with a good checksum: if there is one, the damage
// is in the middle of the log and Open refuses it (ErrCorrupt) rather
// than cut away what follows; if not, the tail is torn and is cut back
// to the last complete commit group.
//
// Steps: read and verify each record (logReader.next), apply each commit
// group whole at its commit record (applyGroup), end at the last complete
// group (cutBack).
func (s *Store) recover() error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	lr := &logReader{r: bufio.NewReaderSize(s.f, 256<<10), total: st.Size()}
	var (
		committed int64    // end of the last complete group
		n         int      // records applied
		group     [][]byte // a group's records, applied at its commit record
		badWhy    string
	)
	for lr.off < lr.total {
		var body []byte
		if body, badWhy = lr.next(); badWhy != "" {
			break
		}
		if body[0] != opCommit {
			group = append(group, body)
			continue
		}
		if err := s.applyGroup(group, lr.off, committed); err != nil {
			return err
		}
		n += len(group)
		group = group[:0]
		committed = lr.off
	}
	if badWhy == "" && len(group) > 0 {
		badWhy = "the last commit group has no commit record"
	}
	return s.cutBack(badWhy, lr.off, committed, lr.total, n)
}

// logReader reads the log's records in order from its start. Open only.
type logReader struct {
	r          *bufio.Reader
	off, total int64 // read so far (the end of the last good record); the log's size
	hdr        [headerSize]byte
}

// next reads the record at off and verifies it: its body (off moves past
// it), or why the log is bad there (off stays at the bad spot).
func (lr *logReader) next() (body []byte, badWhy string) {
	if _, err := io.ReadFull(lr.r, lr.hdr[:]); err != nil {
		return nil, "a record header is cut short"
	}
	length := binary.BigEndian.Uint32(lr.hdr[:4])
	sum := binary.BigEndian.Uint32(lr.hdr[4:])
	end := lr.off + headerSize + int64(length)
	if length == 0 || length > maxRecord {
		return nil, fmt.Sprintf("a record length of %d is impossible", length)
	}
	if end > lr.total {
		return nil, fmt.Sprintf("a record length of %d runs past the end of the log", length)
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(lr.r, body); err != nil {
		return nil, "a record is cut short"
	}
	if crc32.Checksum(body, crcTable) != sum {
		return nil, "a record fails its checksum"
	}
	lr.off = end
	return body, ""
}

// applyGroup replays the records of one commit group, whose commit record
// ends at byte end; the group before it ended at committed (where repair
// would cut). A record that does not decode is ErrCorrupt. Open only.
func (s *Store) applyGroup(group [][]byte, end, committed int64) error {
	for _, b := range group {
		if err := s.apply(b); err != nil {
			return fmt.Errorf("%w: %s: a record before byte %d does not decode (%w); open it with repair (busbar --store_repair) to cut the log at byte %d",
				ErrCorrupt, filepath.Join(s.dir, LogName), end, err, committed)
		}
	}
	return nil
}

// cutBack ends recovery at the last complete commit group (committed)
// when the log goes on past it: a torn tail (nothing valid after the bad
// spot at bad) is cut with one log line; anything else is ErrCorrupt, or
// cut with Repair. n records were applied. Open only.
func (s *Store) cutBack(badWhy string, bad, committed, total int64, n int) error {
	s.size = committed
	if committed == total {
		return nil
	}
	torn := true
	if valid, err := s.validAfter(bad+1, total); err != nil {
		return fmt.Errorf("filestore: %w", err)
	} else if valid && bad < total {
		torn = false
		badWhy += ", with valid records after it"
	}
	dropped := total - committed
	if !torn && !s.opts.Repair {
		return fmt.Errorf("%w: %s: at byte %d of %d, after %d good records (%s); open it with repair (busbar --store_repair) to cut it at byte %d, dropping %d bytes",
			ErrCorrupt, filepath.Join(s.dir, LogName), bad, total, n, badWhy, committed, dropped)
	}
	if err := s.f.Truncate(committed); err != nil {
		return fmt.Errorf("filestore: cutting the log at byte %d: %w", committed, err)
	}
	if err := fdatasync(s.f); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	what := "cut a torn tail"
	if !torn {
		what = "repaired a corrupt log"
	}
	s.log.Warn("filestore: "+what, "log", filepath.Join(s.dir, LogName), "reason", badWhy,
		"kept_records", n, "kept_bytes", committed, "dropped_bytes", dropped)
	return nil
}

// scanBudget bounds the bytes validAfter checksums: past it, the rest of
// the log is taken for valid data (refused, never cut).
const scanBudget = 4 << 30

// validAfter reports whether a whole record with a known op and a good
// checksum starts anywhere in [from, total). Open only.
func (s *Store) validAfter(from, total int64) (bool, error) {
	const window = 64 << 10
	buf := make([]byte, window+headerSize+1)
	budget := int64(scanBudget)
	for base := from; base+headerSize+1 <= total; base += window {
		n, err := s.f.ReadAt(buf[:min(int64(len(buf)), total-base)], base)
		if err != nil && err != io.EOF {
			return false, err
		}
		b := buf[:n]
		for i := 0; i < window && i+headerSize+1 <= len(b); i++ {
			length := binary.BigEndian.Uint32(b[i:])
			op := b[i+headerSize]
			at := base + int64(i)
			if length == 0 || length > maxRecord || at+headerSize+int64(length) > total || op == 0 || op > opLast {
				continue
			}
			if budget -= int64(length); budget < 0 {
				return true, nil
			}
			ok, err := s.checksumAt(at+headerSize, int64(length), binary.BigEndian.Uint32(b[i+4:]))
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// checksumAt reports whether the n bytes at off have the CRC sum.
func (s *Store) checksumAt(off, n int64, sum uint32) (bool, error) {
	h := crc32.New(crcTable)
	if _, err := io.Copy(h, io.NewSectionReader(s.f, off, n)); err != nil {
		return false, err
	}
	return h.Sum32() == sum, nil
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
	switch op := body[0]; op {
	case opSaveSession, opSaveSessionV1:
		x := d.session(op == opSaveSessionV1)
		if d.err == nil {
			err = s.mem.SaveSession(ctx, x)
		}
	case opPutSub:
		id, sub := d.string(), d.subscription()
		if d.err == nil {
			err = s.mem.PutSubscription(ctx, id, &sub)
		}
	case opDeleteSub:
		id, filter := d.string(), d.string()
		if d.err == nil {
			err = s.mem.DeleteSubscription(ctx, id, filter)
		}
	case opDeleteSession:
		id := d.string()
		if d.err == nil {
			err = s.mem.DeleteSession(ctx, id)
		}
	case opPutInflight, opPutInflightV1:
		id, f := d.string(), d.inflight(op == opPutInflightV1)
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
	case opSetRetained, opSetRetainedV1:
		subject := d.string()
		var m *store.Message
		if d.bool() {
			x := d.message(op == opSetRetainedV1)
			m = &x
		}
		if d.err == nil {
			err = s.mem.SetRetained(ctx, subject, m)
		}
	default:
		return fmt.Errorf("%w %d", errUnknownOp, body[0])
	}
	if d.err != nil {
		return d.err
	}
	if err == nil && len(d.b) != 0 {
		return errTrailing
	}
	return err
}
