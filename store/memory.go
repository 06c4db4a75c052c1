package store

import (
	"context"
	"sort"
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
// subscriptions, by filter. m.mu held.
func (ms *memSession) stored() *Session {
	c := *ms.s
	c.KeepSubs = false
	c.Subs = make([]Subscription, 0, len(ms.subs))
	for _, sub := range ms.subs {
		c.Subs = append(c.Subs, sub)
	}
	sort.Slice(c.Subs, func(i, j int) bool { return c.Subs[i].Filter < c.Subs[j].Filter })
	return &c
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

// Load replays the stored state (a snapshot taken under the lock).
func (m *Memory) Load(ctx context.Context, fn func(Record) error) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var recs []Record
	for _, id := range m.order {
		ms := m.sessions[id]
		if ms.s != nil {
			recs = append(recs, Record{Kind: KindSession, ClientID: id, Session: ms.stored()})
		}
		for _, f := range ms.inflight {
			recs = append(recs, Record{Kind: KindInflight, ClientID: id, Inflight: f})
		}
		ids := make([]int, 0, len(ms.inbound))
		for pid := range ms.inbound {
			ids = append(ids, int(pid))
		}
		sort.Ints(ids)
		for _, pid := range ids {
			recs = append(recs, Record{Kind: KindInbound, ClientID: id, Inbound: uint16(pid)})
		}
	}
	subjects := make([]string, 0, len(m.retained))
	for s := range m.retained {
		subjects = append(subjects, s)
	}
	sort.Strings(subjects)
	for _, s := range subjects {
		recs = append(recs, Record{Kind: KindRetained, Key: s, Retained: m.retained[s]})
	}
	m.mu.Unlock()
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
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
