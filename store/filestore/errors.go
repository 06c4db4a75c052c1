package filestore

import "errors"

// ErrCorrupt is returned by Open for a log with a bad record in the
// middle (not a torn tail). Its message names the log, the byte and how
// to repair it; Options.Repair cuts the log there instead.
var ErrCorrupt = errors.New("filestore: corrupt log")

// Why a record that passed its checksum does not decode (wrapped in
// ErrCorrupt by Open).
var (
	errShort     = errors.New("filestore: record body too short")
	errUnknownOp = errors.New("filestore: unknown record operation")
	errTrailing  = errors.New("filestore: trailing bytes after a record")
)

// errCompactionAborted ends a compaction the store's Close overtook.
var errCompactionAborted = errors.New("filestore: compaction aborted: the store is closing")
