package broker

import (
	"context"
	"strings"
	"sync"

	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/subject"
)

// Retained messages (MQTT [MQTT-3.3.1-5]): the last message published
// with the retain flag on each subject, per account. They are state of the
// account they were published in, set only through the publish gate
// (Session.Publish) and replayed only through the delivery gate
// (Session.Retained), so an account never sees or plants another's, and a
// subscriber never gets one its permissions forbid. The broker's Store keeps
// them across restarts under RetainedKey.

// ExtStorer is a Message.Ext the Store can keep with a retained message
// (MQTT 5.0 properties and expiry): StoreExt gives store.Message's Props
// and Expires.
type ExtStorer interface {
	StoreExt() (props []byte, expires int64)
}

// StoredExt is the Ext of a retained message loaded from the Store, as
// the Store kept it (store.Message's Props and Expires): the transport
// that made it reads it back.
type StoredExt struct {
	Props   []byte
	Expires int64
}

// ExtensionName is "stored".
func (StoredExt) ExtensionName() string { return "stored" }

// retainedSet is one account's retained messages by subject.
type retainedSet struct {
	mu   sync.RWMutex
	msgs map[string]Message // stable messages
}

// RetainedKey is the Store key of the retained message on subj in
// account acc: the subject alone in the global account (the form stores
// written before accounts scoped retained messages), else the account name,
// a NUL byte and the subject (neither a subject nor an account name holds
// NUL).
func RetainedKey(acc, subj string) string {
	if acc == "" || acc == GlobalAccount {
		return subj
	}
	return acc + "\x00" + subj
}

// SplitStoreKey is the inverse of RetainedKey and of the session keys the
// MQTT transport builds the same way: the account and the rest.
func SplitStoreKey(key string) (acc, rest string) {
	if a, r, ok := strings.Cut(key, "\x00"); ok {
		return a, r
	}
	return GlobalAccount, key
}

// set stores (or, with an empty payload, deletes [MQTT-3.3.1-10]) m, a
// stable message. The caller writes the Store.
func (r *retainedSet) set(m *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.msgs, string(m.Subject))
		return
	}
	if r.msgs == nil {
		r.msgs = make(map[string]Message)
	}
	kept := *m
	kept.origin, kept.stable, kept.borrowed, kept.ownPayload = nil, nil, false, false
	r.msgs[string(m.Subject)] = kept
}

func (r *retainedSet) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.msgs)
}

// retain records m (published with the retain flag through s's gate) in
// s's account and in the Store. Publisher goroutine of s.
func (s *Session) retain(m *Message) {
	sm := m.Stable()
	a := s.acc.Load()
	if st := s.b.Store(); st != nil {
		rec := &store.Message{Subject: sm.Subject, Payload: sm.Payload, QoS: sm.QoS, Retain: true}
		if x, ok := sm.Ext.(ExtStorer); ok {
			rec.Props, rec.Expires = x.StoreExt()
		}
		if err := st.SetRetained(context.Background(), RetainedKey(a.name, string(sm.Subject)), rec); err != nil {
			s.b.log.Error("storing a retained message", "account", a.name, "subject", string(sm.Subject), "err", err)
		}
	}
	a.ret.set(sm)
}

// Retained calls fn with every retained message of s's account whose
// subject matches one of filters and that s's identity may receive now
// (subscribe permission, in queue group queue or none): the replay of a new
// subscription. Messages are stable; fn may keep them.
func (s *Session) Retained(filters [][]byte, queue []byte, fn func(m *Message)) {
	r := &s.acc.Load().ret
	r.mu.RLock()
	var hits []Message
	for subj, m := range r.msgs {
		for _, f := range filters {
			if subject.Match(f, []byte(subj)) {
				hits = append(hits, m)
				break
			}
		}
	}
	r.mu.RUnlock()
	for i := range hits {
		if s.CanReceive(hits[i].Subject, queue) {
			fn(&hits[i])
		}
	}
}

// NumRetained is the number of retained messages in every account.
func (b *Broker) NumRetained() int {
	n := b.accs.global.ret.len()
	b.accs.mu.Lock()
	accs := make([]*account, 0, len(b.accs.m))
	for _, a := range b.accs.m {
		if a != b.accs.global {
			accs = append(accs, a)
		}
	}
	b.accs.mu.Unlock()
	for _, a := range accs {
		n += a.ret.len()
	}
	return n
}

// applyRetained sets the retained message stored under key in the index
// without writing the Store: a Store shared by several brokers reports
// what any of them retained (store.Shared.OnRetained). m nil or empty
// deletes.
func (b *Broker) applyRetained(key string, m *store.Message) {
	acc, subj := SplitStoreKey(key)
	msg := &Message{Subject: []byte(subj), Retain: true, MQTT: true}
	if m != nil {
		msg.Payload, msg.QoS = m.Payload, m.QoS
		if len(m.Props) > 0 || m.Expires != 0 { // 5.0 properties and expiry, as loadRetained
			msg.Ext = StoredExt{Props: m.Props, Expires: m.Expires}
		}
	}
	b.account(acc).ret.set(msg)
}

// loadRetained fills the accounts' retained messages from the Store. New.
func (b *Broker) loadRetained() {
	st := b.Store()
	if st == nil {
		return
	}
	err := st.Load(context.Background(), func(rec store.Record) error {
		if rec.Kind != store.KindRetained || rec.Retained == nil {
			return nil
		}
		key := rec.Key
		if key == "" {
			key = string(rec.Retained.Subject)
		}
		acc, _ := SplitStoreKey(key)
		m := rec.Retained
		msg := &Message{Subject: m.Subject, Payload: m.Payload, QoS: m.QoS, Retain: true, MQTT: true}
		if len(m.Props) > 0 || m.Expires != 0 {
			msg.Ext = StoredExt{Props: m.Props, Expires: m.Expires}
		}
		b.account(acc).ret.set(msg)
		return nil
	})
	if err != nil {
		b.log.Error("loading retained messages", "err", err)
	}
	if sh, ok := st.(store.Shared); ok {
		sh.OnRetained(b.applyRetained)
	}
}
