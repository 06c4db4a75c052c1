package store

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Memory is the in-memory Store: durable for as long as the process
// lives. The zero value is not ready; use NewMemory.
type Memory struct {
	mu       sync.Mutex // guards everything below
	closed   bool
	sessions map[string]*memSession
	order    []string // client ids in creation order, for Load
	retained map[string]*Message
}

type memSession struct {
	s        *Session                // its Subs are not read: subs holds them
	subs     map[string]Subscription // by filter
	inflight []*Inflight             // in put order
	inbound  map[uint16]struct{}
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory Store.
func NewMemory() *Memory {
	return &Memory{sessions: make(map[string]*memSession), retained: make(map[string]*Message)}
}

func (m *Memory) session(id string) *memSession {
	ms := m.sessions[id]
	if ms == nil {
		ms = &memSession{inbound: make(map[uint16]struct{})}
		m.sessions[id] = ms
		m.order = append(m.order, id)
	}
	return ms
}

// SaveSession stores or replaces s.
func (m *Memory) SaveSession(_ context.Context, s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	ms := m.session(s.ClientID)
	ms.s = s
	if !s.KeepSubs {
		ms.subs = make(map[string]Subscription, len(s.Subs))
		for _, sub := range s.Subs {
			ms.subs[sub.Filter] = sub
		}
	}
	return nil
}

// PutSubscription adds or replaces (same Filter) one subscription.
func (m *Memory) PutSubscription(_ context.Context, id string, sub *Subscription) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	ms := m.session(id)
	if ms.subs == nil {
		ms.subs = make(map[string]Subscription)
	}
	ms.subs[sub.Filter] = *sub
	return nil
}

// DeleteSubscription removes one subscription.
func (m *Memory) DeleteSubscription(_ context.Context, id, filter string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if ms := m.sessions[id]; ms != nil {
		delete(ms.subs, filter)
	}
	return nil
}

// stored is the session as Load replays it: its record with the
// subscriptions, by filter.
func (c *sessionCopy) stored() *Session {
	x := *c.s
	x.KeepSubs = false
	x.Subs = make([]Subscription, 0, len(c.subs))
	for _, sub := range c.subs {
		x.Subs = append(x.Subs, sub)
	}
	slices.SortFunc(x.Subs, func(a, b Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	return &x
}

// DeleteSession removes a session with its in-flight and inbound state.
func (m *Memory) DeleteSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.sessions[id]; ok {
		delete(m.sessions, id)
		for i, o := range m.order {
			if o == id {
				m.order = append(m.order[:i], m.order[i+1:]...)
				break
			}
		}
	}
	return nil
}

// PutInflight adds an in-flight message, or replaces the one with the
// same Seq.
func (m *Memory) PutInflight(_ context.Context, id string, f *Inflight) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	ms := m.session(id)
	if _, i := m.find(id, f.Seq); i >= 0 {
		ms.inflight[i] = f
		return nil
	}
	ms.inflight = append(ms.inflight, f)
	return nil
}

func (m *Memory) find(id string, seq uint64) (*memSession, int) {
	ms := m.sessions[id]
	if ms == nil {
		return nil, -1
	}
	for i, f := range ms.inflight {
		if f.Seq == seq {
			return ms, i
		}
	}
	return ms, -1
}

// Release marks an in-flight QoS 2 message as past PUBREC.
func (m *Memory) Release(_ context.Context, id string, seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if ms, i := m.find(id, seq); i >= 0 {
		c := *ms.inflight[i]
		c.Released = true
		ms.inflight[i] = &c
	}
	return nil
}

// AckInflight removes an in-flight message.
func (m *Memory) AckInflight(_ context.Context, id string, seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if ms, i := m.find(id, seq); i >= 0 {
		ms.inflight = append(ms.inflight[:i], ms.inflight[i+1:]...)
	}
	return nil
}

// PutInbound records a QoS 2 packet id awaiting PUBREL.
func (m *Memory) PutInbound(_ context.Context, id string, pid uint16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.session(id).inbound[pid] = struct{}{}
	return nil
}

// DeleteInbound forgets a QoS 2 packet id.
func (m *Memory) DeleteInbound(_ context.Context, id string, pid uint16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if ms := m.sessions[id]; ms != nil {
		delete(ms.inbound, pid)
	}
	return nil
}

// SetRetained stores or deletes the retained message of subject.
func (m *Memory) SetRetained(_ context.Context, subject string, msg *Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if msg == nil || len(msg.Payload) == 0 {
		delete(m.retained, subject)
		return nil
	}
	m.retained[subject] = msg
	return nil
}

// Load replays the stored state (a Snapshot).
func (m *Memory) Load(ctx context.Context, fn func(Record) error) error {
	snap, err := m.Snapshot()
	if err != nil {
		return err
	}
	return snap.Load(ctx, fn)
}

// Snapshot is a Memory's state at one moment, for Load (a durable store
// rewriting its log replays one without holding the Memory's lock).
type Snapshot struct {
	sessions []sessionCopy // in creation order
	retained map[string]*Message
}

type sessionCopy struct {
	id       string
	s        *Session
	subs     map[string]Subscription
	inflight []*Inflight
	inbound  []uint16
}

// Snapshot copies the state under the lock by reference (stored records
// are immutable): per session a copy of its slices and maps, no record
// built or sorted. Snapshot.Load does that, without the lock.
func (m *Memory) Snapshot() (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	snap := &Snapshot{sessions: make([]sessionCopy, 0, len(m.order)), retained: maps.Clone(m.retained)}
	for _, id := range m.order {
		ms := m.sessions[id]
		c := sessionCopy{id: id, s: ms.s, inflight: slices.Clone(ms.inflight)}
		if ms.s != nil {
			c.subs = maps.Clone(ms.subs)
		}
		for pid := range ms.inbound {
			c.inbound = append(c.inbound, pid)
		}
		snap.sessions = append(snap.sessions, c)
	}
	return snap, nil
}

// Load replays the snapshot as Store.Load does: each session with its
// subscriptions by filter, its in-flight messages in put order and its
// inbound ids in order, then the retained messages by key.
func (snap *Snapshot) Load(ctx context.Context, fn func(Record) error) error {
	emit := func(r Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(r)
	}
	for _, c := range snap.sessions {
		if c.s != nil {
			if err := emit(Record{Kind: KindSession, ClientID: c.id, Session: c.stored()}); err != nil {
				return err
			}
		}
		for _, f := range c.inflight {
			if err := emit(Record{Kind: KindInflight, ClientID: c.id, Inflight: f}); err != nil {
				return err
			}
		}
		slices.Sort(c.inbound)
		for _, pid := range c.inbound {
			if err := emit(Record{Kind: KindInbound, ClientID: c.id, Inbound: pid}); err != nil {
				return err
			}
		}
	}
	keys := slices.Sorted(maps.Keys(snap.retained))
	for _, k := range keys {
		if err := emit(Record{Kind: KindRetained, Key: k, Retained: snap.retained[k]}); err != nil {
			return err
		}
	}
	return nil
}

// Close ends the store; later calls return ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
