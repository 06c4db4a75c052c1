package mqtt

import (
	"context"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/store"
)

// Persistence: a session that outlives its connection is mirrored in the
// broker's Store (its subscriptions, expiry and will; its outbound QoS 1/2
// messages, queued or in flight, by sequence number; its inbound QoS 2
// ids) and restored when the broker starts. Store errors are logged; the
// in-memory state stays authoritative.

var bg = context.Background()

func (s *session) persistent() bool { return s.expiry != 0 }

// saveLocked writes the session record. s.mu held.
func (s *session) saveLocked() {
	if !s.persistent() {
		return
	}
	rec := &store.Session{ClientID: s.id, Owner: s.owner, Expiry: int64(s.expiry / time.Second)}
	if s.expiry < 0 {
		rec.Expiry = -1
	}
	for key, st := range s.subs {
		rec.Subs = append(rec.Subs, store.Subscription{Filter: key, QoS: st.qos, NoLocal: st.noLocal,
			RetainAsPublished: st.rap, RetainHandling: st.rh, SubID: st.subID})
	}
	if w := s.will; w != nil {
		rec.Will = &store.Message{Subject: w.m.Subject, Payload: w.m.Payload, QoS: w.m.QoS, Retain: w.m.Retain}
		rec.WillDelay = int64(w.delay / time.Second)
	}
	s.check(s.srv.b.Store().SaveSession(bg, rec))
}

func (s *session) check(err error) {
	if err != nil {
		s.srv.b.Logger().Error("mqtt: session store", "client_id", s.id, "err", err)
	}
}

// storeInflightLocked records an outbound message, queued (no packet id)
// or sent. s.mu held.
func (s *session) storeInflightLocked(om *outMsg) {
	if !s.persistent() || om.seq == 0 {
		return
	}
	s.check(s.srv.b.Store().PutInflight(bg, s.id, &store.Inflight{Seq: om.seq, PacketID: om.id, Released: om.rel,
		Msg: store.Message{Subject: om.m.Subject, Payload: om.m.Payload, QoS: om.qos, Retain: om.retain}}))
}

func (s *session) storeAck(seq uint64) {
	if s.persistent() && seq != 0 {
		s.check(s.srv.b.Store().AckInflight(bg, s.id, seq))
	}
}

func (s *session) storeRelease(seq uint64) {
	if s.persistent() && seq != 0 {
		s.check(s.srv.b.Store().Release(bg, s.id, seq))
	}
}

func (s *session) storeInbound(id uint16, add bool) {
	if !s.persistent() {
		return
	}
	if add {
		s.check(s.srv.b.Store().PutInbound(bg, s.id, id))
	} else {
		s.check(s.srv.b.Store().DeleteInbound(bg, s.id, id))
	}
}

// restore recreates the persistent sessions the Store holds, offline,
// with their subscriptions, in-flight messages and inbound QoS 2 ids.
func (srv *server) restore() {
	byID := map[string]*session{}
	err := srv.b.Store().Load(bg, func(r store.Record) error {
		switch r.Kind {
		case store.KindSession:
			if s := srv.restoreSession(r.Session); s != nil {
				byID[s.id] = s
			}
		case store.KindInflight:
			if s := byID[r.ClientID]; s != nil {
				f := r.Inflight
				om := &outMsg{id: f.PacketID, seq: f.Seq, rel: f.Released, qos: f.Msg.QoS, retain: f.Msg.Retain, sent: f.PacketID != 0,
					at: time.Now(), m: broker.Message{Subject: f.Msg.Subject, Payload: f.Msg.Payload, QoS: f.Msg.QoS, MQTT: true}}
				if om.sent {
					s.inflight = append(s.inflight, om)
				} else {
					s.queue = append(s.queue, om)
				}
				s.nextID = max(s.nextID, f.PacketID)
				s.nextSeq = max(s.nextSeq, f.Seq)
			}
		case store.KindInbound:
			if s := byID[r.ClientID]; s != nil {
				if s.inQoS2 == nil {
					s.inQoS2 = make(map[uint16]struct{})
				}
				s.inQoS2[r.Inbound] = struct{}{}
			}
		}
		return nil
	})
	if err != nil {
		srv.b.Logger().Error("mqtt: restoring sessions", "err", err)
	}
	for _, s := range byID {
		if s.expiry > 0 {
			s.timer = time.AfterFunc(s.expiry, func() { srv.endSessionIfIdle(s) })
		}
	}
}

func (srv *server) restoreSession(rec *store.Session) *session {
	var id *auth.Identity
	if rec.Owner != "" {
		id = &auth.Identity{Name: rec.Owner} // permissions are checked again when its client reconnects
	}
	s := &session{srv: srv, id: rec.ClientID, owner: rec.Owner, expiry: time.Duration(rec.Expiry) * time.Second}
	if rec.Expiry < 0 {
		s.expiry = -1
	}
	bs, err := srv.b.Connect(s, id, broker.ConnectOptions{Transport: "mqtt-session", ConnType: auth.ConnMQTT, Name: rec.ClientID, Remote: "session", Detached: true})
	if err != nil {
		srv.b.Logger().Error("mqtt: restoring a session", "client_id", rec.ClientID, "err", err)
		return nil
	}
	s.bs = bs
	for _, sub := range rec.Subs {
		st, err := newSubState([]byte(sub.Filter), sub.QoS, sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling, sub.SubID)
		if err != nil {
			continue
		}
		if s.addSub(sub.Filter, st) != nil {
			continue
		}
	}
	if w := rec.Will; w != nil {
		s.will = &will{m: broker.Message{Subject: w.Subject, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, MQTT: true},
			delay: time.Duration(rec.WillDelay) * time.Second}
	}
	srv.mu.Lock()
	srv.sessions[s.id] = s
	srv.mu.Unlock()
	return s
}
