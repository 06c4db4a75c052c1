package mqtt

// The publish log of a shared store (store.PublishLog, hub.Store): an
// accepted QoS 1/2 publish gets an id and is logged before it is
// acknowledged (publish.go); a session loaded after its holder died
// replays what was logged since, so nothing acknowledged is lost with an
// instance.

import (
	"context"
	"strconv"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/store"
)

// logIDPrefix: enough of the broker's random id to tell instances apart.
const logIDPrefix = 16

// nextLogID is a new publish id, unique across instances (the broker's
// id, then a count).
func (srv *server) nextLogID() string {
	id := srv.b.ID()
	if len(id) > logIDPrefix {
		id = id[:logIDPrefix]
	}
	return id + "." + strconv.FormatUint(srv.logSeq.Add(1), 36)
}

// replayLog gives s, loaded from st after its holder died (st.Gone), the
// logged messages its holder may not have stored: those matching its
// subscriptions that it does not hold already (by id), through the same
// checks as a live delivery (the identity's subscribe permission, no
// local, the granted QoS). Shared subscriptions are left out: another
// member of the group may have had the message. Before the session's
// client is attached; for a session restored without its identity
// (suspended), once its client is back (reidentify).
func (srv *server) replayLog(s *session, st *store.SessionState) {
	pl := srv.plog
	if pl == nil || s == nil || st == nil || st.Gone.IsZero() {
		return
	}
	s.mu.Lock()
	susp := s.suspended
	s.mu.Unlock()
	if susp { // its subscriptions wait for its client: so does this
		srv.mu.Lock()
		if srv.replays == nil {
			srv.replays = map[*session]*store.SessionState{}
		}
		srv.replays[s] = st
		srv.mu.Unlock()
		return
	}
	have := map[string]bool{}
	for _, f := range st.Inflight {
		if f.Msg.ID != "" {
			have[f.Msg.ID] = true
		}
	}
	for _, id := range st.Done {
		have[id] = true
	}
	scanned, n := 0, 0
	err := pl.Replay(context.Background(), s.bs.Account(), st.Gone, func(from string, sm *store.Message) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for ; scanned < len(s.queue); scanned++ { // live deliveries since the load
			if id := broker.LogIDOf(&s.queue[scanned].m); id != "" {
				have[id] = true
			}
		}
		if have[sm.ID] || s.ended {
			return
		}
		have[sm.ID] = true
		m := &broker.Message{Subject: sm.Subject, Payload: sm.Payload, QoS: sm.QoS, Retain: sm.Retain, MQTT: true,
			Ext: extWithID(extFromStore(sm.Props, sm.Expires), sm.ID)}
		for _, sub := range s.subs {
			if sub.share != "" || sub.qos == 0 || (sub.noLocal && from == s.key) {
				continue
			}
			if s.matches(sub, m) && s.bs.CanReceive(m.Subject, nil) {
				s.deliverLocked(sub, m)
				n++
				scanned = len(s.queue)
				return
			}
		}
	})
	log := srv.b.Logger()
	if err != nil {
		log.Warn("mqtt: replaying the publish log for a session whose holder is gone", "client_id", s.id, "err", err)
		return
	}
	if n > 0 {
		log.Info("mqtt: replayed messages its gone holder had not stored", "client_id", s.id, "messages", n)
	}
}

// takeReplay is the replay kept for s while it was suspended, or nil.
func (srv *server) takeReplay(s *session) *store.SessionState {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	st := srv.replays[s]
	delete(srv.replays, s)
	return st
}
