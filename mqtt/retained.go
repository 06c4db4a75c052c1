package mqtt

import (
	"context"
	"log/slog"
	"sync"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/subject"
)

// retained holds the last retained message of each subject
// ([MQTT-3.3.1-5]); an empty payload deletes it ([MQTT-3.3.1-10/-11]).
// Shared by every MQTT listener of one broker.
// The broker's Store keeps them across restarts; msgs is the index
// matched on subscribe.
type retained struct {
	st   store.Store
	log  *slog.Logger
	mu   sync.RWMutex // guards msgs
	msgs map[string]broker.Message
}

// load fills the index from the broker's Store at start.
func (r *retained) load(b *broker.Broker) {
	r.st, r.log = b.Store(), b.Logger()
	err := r.st.Load(context.Background(), func(rec store.Record) error {
		if rec.Kind == store.KindRetained {
			m := rec.Retained
			r.index(broker.Message{Subject: m.Subject, Payload: m.Payload, QoS: m.QoS, Retain: true, MQTT: true})
		}
		return nil
	})
	if err != nil {
		r.log.Error("mqtt: loading retained messages", "err", err)
	}
}

// set stores or, for an empty payload, deletes the retained message for
// m.Subject ([MQTT-3.3.1-5/-10]), in the Store first (durable when it
// returns), then in the index. m must be stable.
func (r *retained) set(m broker.Message) {
	if r.st != nil {
		sm := &store.Message{Subject: m.Subject, Payload: m.Payload, QoS: m.QoS, Retain: true}
		if err := r.st.SetRetained(context.Background(), string(m.Subject), sm); err != nil {
			r.log.Error("mqtt: storing a retained message", "subject", string(m.Subject), "err", err)
		}
	}
	r.index(m)
}

func (r *retained) index(m broker.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.msgs, string(m.Subject))
		return
	}
	if r.msgs == nil {
		r.msgs = make(map[string]broker.Message)
	}
	r.msgs[string(m.Subject)] = m
}

// match calls f for every retained message whose subject matches one of
// the NATS filters.
func (r *retained) match(filters [][]byte, f func(m *broker.Message)) {
	r.mu.RLock()
	var hits []broker.Message
	for subj, m := range r.msgs {
		for _, flt := range filters {
			if subject.Match(flt, []byte(subj)) {
				hits = append(hits, m)
				break
			}
		}
	}
	r.mu.RUnlock()
	for i := range hits {
		f(&hits[i])
	}
}

// len is the number of retained messages.
func (r *retained) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.msgs)
}
