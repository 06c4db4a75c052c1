package mqtt

import (
	"sync"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/subject"
)

// retained holds the last retained message of each subject
// ([MQTT-3.3.1-5]); an empty payload deletes it ([MQTT-3.3.1-10/-11]).
// Shared by every MQTT listener of one broker.
type retained struct {
	mu   sync.RWMutex // guards msgs
	msgs map[string]broker.Message
}

// set stores or, for an empty payload, deletes the retained message for
// m.Subject. m must be stable.
func (r *retained) set(m broker.Message) {
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
