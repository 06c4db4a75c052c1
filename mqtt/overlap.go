package mqtt

import (
	"slices"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/subject"
)

// Overlapping subscriptions: a session whose subscriptions match one
// message several times gets it once, at the highest QoS they grant and
// with every matching subscription identifier ([MQTT-3.3.4-2..-5]); a
// 3.1.1 client gets one copy too ([MQTT-3.3.5-1] allows one). The router
// calls session.Deliver once per matching router subscription, all within
// one publish on the publisher's goroutine; the first call sends the copy
// for all of them and the others find the publish marked as sent. Shared
// subscriptions are apart: each is a queue group of its own and delivers
// its own copy (5.0 §4.8.2). Plain literal filters never overlap each
// other, so only a session holding a wildcard filter pays for the check.

// plainIndex is what the session knows of its subscriptions that are not
// shared: how many, which hold a wildcard, and the literal ones by
// subject. s.mu held.
type plainIndex struct {
	n    int
	wild []*subState
	lit  map[string]*subState
}

// pubMark is the publish a session last sent for several subscriptions.
type pubMark struct {
	m      *broker.Message
	origin broker.Client
	id     uint32
}

func isWildFilter(nats [][]byte) bool {
	for _, f := range nats {
		if !subject.IsLiteral(f) {
			return true
		}
	}
	return false
}

// indexSubLocked notes st, a subscription added. s.mu held.
func (s *session) indexSubLocked(st *subState) {
	if st.share != "" {
		return
	}
	s.plain.n++
	if st.wild {
		s.plain.wild = append(s.plain.wild, st)
		return
	}
	if s.plain.lit == nil {
		s.plain.lit = make(map[string]*subState)
	}
	s.plain.lit[string(st.nats[0])] = st
}

// unindexSubLocked forgets st, a subscription removed or replaced. s.mu held.
func (s *session) unindexSubLocked(st *subState) {
	if st.share != "" {
		return
	}
	s.plain.n--
	if i := slices.Index(s.plain.wild, st); i >= 0 {
		s.plain.wild = slices.Delete(s.plain.wild, i, i+1)
	}
	if !st.wild && s.plain.lit[string(st.nats[0])] == st {
		delete(s.plain.lit, string(st.nats[0]))
	}
}

// excluded reports whether st, whose filter matches m, must not deliver
// it: a $-topic for a filter starting with a wildcard [MQTT-4.7.2-1], or
// the session's own message on a no-local subscription [MQTT-3.8.3-3].
func (s *session) excluded(st *subState, m *broker.Message) bool {
	if st.dollar && len(m.Subject) > 0 && m.Subject[0] == '$' {
		return true
	}
	if st.noLocal {
		if oc, ok := m.Origin().(*conn); ok && oc.sess == s {
			return true
		}
	}
	return false
}

// matches reports whether st would deliver m to s.
func (s *session) matches(st *subState, m *broker.Message) bool {
	if s.excluded(st, m) {
		return false
	}
	for _, f := range st.nats {
		if subject.Match(f, m.Subject) {
			return true
		}
	}
	return false
}

// overlap is what one copy of m carries when several of the session's
// plain subscriptions match it: done when an earlier call of this publish
// sent it already (or nothing matches); else the QoS, retain flag and
// subscription identifiers. st is the subscription the router delivers
// through. s.mu held.
func (s *session) overlap(st *subState, m *broker.Message) (done bool, qos byte, retain bool, ids []uint32) {
	mark := pubMark{m, m.Origin(), m.PublishID()}
	if s.sent == mark {
		return true, 0, false, nil
	}
	n := 0
	var one *subState
	consider := func(c *subState) {
		if !s.matches(c, m) {
			return
		}
		n++
		one = c
		qos = max(qos, effectiveQoS(m, c.qos))
		retain = retain || c.rap && m.Retain
		if c.subID > 0 && !slices.Contains(ids, c.subID) {
			ids = append(ids, c.subID)
		}
	}
	consider(st) // also while it is not indexed yet (addSub subscribes first)
	if c := s.plain.lit[string(m.Subject)]; c != nil && c != st {
		consider(c)
	}
	for _, c := range s.plain.wild {
		if c != st {
			consider(c)
		}
	}
	s.sent = mark // sent now, or excluded for every subscription
	switch n {
	case 0:
		return true, 0, false, nil
	case 1:
		ids = one.ids // the one that matched, which may not be st
	default:
		slices.Sort(ids) // any order is right [MQTT-3.3.4-4]; sorted reads best
	}
	return false, qos, retain, ids
}
