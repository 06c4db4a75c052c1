package filestore

// SetCompactHook makes the compactor call f before it writes its
// snapshot (tests hold a compaction open with it). Call before writing.
func SetCompactHook(s *Store, f func()) { s.compactHook = f }
