package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/subject"
)

// Persistence: a session that outlives its connection is mirrored in the
// broker's Store (its subscriptions, expiry and will; its outbound QoS 1/2
// messages, queued or in flight, by sequence number; its inbound QoS 2
// ids) and restored when the broker starts. Store errors are logged; the
// in-memory state stays authoritative.

var bg = context.Background()

func (s *session) persistent() bool { return s.expiry != 0 }

// saveLocked writes the session record: expiry, will, and the
// subscriptions when the Store does not hold them yet (afterwards each
// change is a record of its own: putSubLocked, delSubLocked). s.mu held.
func (s *session) saveLocked() {
	if !s.persistent() {
		s.subsKept = false // nothing is written meanwhile
		return
	}
	rec := &store.Session{ClientID: s.key, Owner: s.owner, Expiry: int64(s.expiry / time.Second), KeepSubs: s.subsKept}
	if s.expiry < 0 {
		rec.Expiry = -1
	}
	if !s.subsKept {
		for key, st := range s.subs {
			rec.Subs = append(rec.Subs, storeSub(key, st))
		}
	}
	if w := s.will; w != nil {
		rec.Will = &store.Message{Subject: w.m.Subject, Payload: w.m.Payload, QoS: w.m.QoS, Retain: w.m.Retain}
		if w.props != nil {
			rec.Will.Props = packet.AppendMessageProps(nil, w.props)
		}
		rec.WillDelay = int64(w.delay / time.Second)
	}
	s.check(s.srv.b.Store().SaveSession(bg, rec))
	s.subsKept = true
}

func storeSub(key string, st *subState) store.Subscription {
	return store.Subscription{Filter: key, QoS: st.qos, NoLocal: st.noLocal,
		RetainAsPublished: st.rap, RetainHandling: st.rh, SubID: st.subID}
}

// setSubLocked records st as the subscription key (replacing and
// returning the previous one), in the Store too unless !persist (a
// restored subscription: it is there). s.mu held.
func (s *session) setSubLocked(key string, st *subState, persist bool) *subState {
	old := s.subs[key]
	if old != nil && old.qos > 0 {
		s.qosSubs--
	}
	if old != nil {
		s.unindexSubLocked(old)
	}
	if s.subs == nil {
		s.subs = make(map[string]*subState)
	}
	s.subs[key] = st
	s.indexSubLocked(st)
	if st.qos > 0 {
		s.qosSubs++
	}
	switch {
	case !persist || !s.persistent():
	case !s.subsKept:
		s.saveLocked()
	default:
		sub := storeSub(key, st)
		s.check(s.srv.b.Store().PutSubscription(bg, s.key, &sub))
	}
	return old
}

// delSubLocked removes the subscription key and returns it (nil: there
// was none). s.mu held.
func (s *session) delSubLocked(key string) *subState {
	st := s.subs[key]
	if st == nil {
		return nil
	}
	delete(s.subs, key)
	s.unindexSubLocked(st)
	if st.qos > 0 {
		s.qosSubs--
	}
	switch {
	case !s.persistent():
	case !s.subsKept:
		s.saveLocked()
	default:
		s.check(s.srv.b.Store().DeleteSubscription(bg, s.key, key))
	}
	return st
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
	s.check(s.srv.b.Store().PutInflight(bg, s.key, &store.Inflight{Seq: om.seq, PacketID: om.id, Released: om.rel,
		Msg: storeMessage(&om.m, om.qos, om.retain)}))
}

func (s *session) storeAck(seq uint64) {
	if s.persistent() && seq != 0 {
		s.check(s.srv.b.Store().AckInflight(bg, s.key, seq))
	}
}

func (s *session) storeRelease(seq uint64) {
	if s.persistent() && seq != 0 {
		s.check(s.srv.b.Store().Release(bg, s.key, seq))
	}
}

func (s *session) storeInbound(id uint16, add bool) {
	if !s.persistent() {
		return
	}
	if add {
		s.check(s.srv.b.Store().PutInbound(bg, s.key, id))
	} else {
		s.check(s.srv.b.Store().DeleteInbound(bg, s.key, id))
	}
}

// restore recreates the persistent sessions the Store holds, offline,
// with their subscriptions, in-flight messages and inbound QoS 2 ids.
func (srv *server) restore() {
	byID := map[string]*session{}
	err := srv.b.Store().Load(bg, func(r store.Record) error {
		srv.replay(r, byID)
		return nil
	})
	if err != nil {
		srv.b.Logger().Error("mqtt: restoring sessions", "err", err)
	}
	for _, s := range byID {
		srv.armExpiry(s)
	}
}

// armExpiry starts the expiry timer of a restored (offline) session.
func (srv *server) armExpiry(s *session) {
	if s.expiry > 0 {
		s.timer = time.AfterFunc(s.expiry, func() { srv.endSessionIfIdle(s) })
	}
}

// replay applies one stored record to the sessions being restored.
func (srv *server) replay(r store.Record, byID map[string]*session) {
	{
		switch r.Kind {
		case store.KindSession:
			if s := srv.restoreSession(r.Session); s != nil {
				byID[s.key] = s
			}
		case store.KindInflight:
			if s := byID[r.ClientID]; s != nil {
				f := r.Inflight
				om := &outMsg{id: f.PacketID, seq: f.Seq, queue: s.queueOf(f.Msg.Subject), rel: f.Released, qos: f.Msg.QoS, retain: f.Msg.Retain, sent: f.PacketID != 0,
					m: broker.Message{Subject: f.Msg.Subject, Payload: f.Msg.Payload, QoS: f.Msg.QoS, MQTT: true}}
				om.m.Ext = extWithID(extFromStore(f.Msg.Props, f.Msg.Expires), f.Msg.ID) // the expiry is absolute: it counted down while the broker was down
				s.mu.Lock()
				s.hold(om)
				if om.sent {
					s.inflight = append(s.inflight, om)
				} else {
					s.queue = append(s.queue, om)
				}
				s.nextID = max(s.nextID, f.PacketID)
				s.nextSeq = max(s.nextSeq, f.Seq)
				s.mu.Unlock()
			}
		case store.KindInbound:
			if s := byID[r.ClientID]; s != nil {
				if s.inQoS2 == nil {
					s.inQoS2 = make(map[uint16]struct{})
				}
				s.inQoS2[r.Inbound] = struct{}{}
			}
		}
	}
}

// restoreSession recreates one stored session in its account, as the
// identity that owns it is now: resolved from the running configuration
// (auth.Resolver), so it follows the current permissions; a session whose
// user is gone, moved to another account or refused ends. One whose
// identity the Authenticator cannot resolve without credentials is
// suspended: kept, with no subscription in the router and no will, until
// its client authenticates again.
func (srv *server) restoreSession(rec *store.Session) *session {
	acc, clientID := broker.SplitStoreKey(rec.ClientID)
	id, suspended, err := srv.restoredIdentity(rec.Owner, acc)
	if err != nil {
		srv.b.Logger().Info("mqtt: ending a stored session its identity no longer owns", "client_id", clientID, "account", acc, "err", err)
		srv.check(srv.b.Store().DeleteSession(bg, rec.ClientID))
		return nil
	}
	s := &session{srv: srv, id: clientID, key: rec.ClientID, owner: rec.Owner, expiry: time.Duration(rec.Expiry) * time.Second, suspended: suspended}
	if rec.Expiry < 0 {
		s.expiry = -1
	}
	bs, err := srv.b.Connect(s, id, broker.ConnectOptions{Transport: "mqtt-session", ConnType: auth.ConnMQTT, Name: clientID, Remote: "session", Detached: true})
	if err != nil {
		srv.b.Logger().Error("mqtt: restoring a session", "client_id", clientID, "err", err)
		return nil
	}
	s.bs = bs
	dropped := false
	for _, sub := range rec.Subs {
		st, err := newSubState([]byte(sub.Filter), sub.QoS, sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling, sub.SubID)
		if err != nil {
			dropped = true
			continue
		}
		if suspended {
			s.mu.Lock()
			s.setSubLocked(sub.Filter, st, false)
			s.mu.Unlock()
			continue
		}
		if s.addSub(sub.Filter, st, false) != nil {
			dropped = true
			srv.b.Logger().Info("mqtt: dropped a restored subscription the identity may not make", "client_id", clientID, "filter", sub.Filter)
		}
	}
	if w := rec.Will; w != nil && !suspended {
		s.will = &will{m: broker.Message{Subject: w.Subject, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, MQTT: true},
			delay: time.Duration(rec.WillDelay) * time.Second}
		if len(w.Props) > 0 {
			if p, err := packet.DecodeMessageProps(w.Props); err == nil {
				s.will.props = p
			}
		}
	}
	s.mu.Lock()
	s.subsKept = !dropped // else rewritten without what was dropped
	s.saveLocked()
	s.mu.Unlock()
	srv.mu.Lock()
	srv.sessions[s.key] = s
	srv.mu.Unlock()
	return s
}

// restoredIdentity is who owns a stored session now: the identity the
// Authenticator resolves for owner in account acc, with the MQTT
// connection types; suspended (a stand-in allowed nothing) when it cannot
// tell; an error when the user is gone, refused or in another account.
func (srv *server) restoredIdentity(owner, acc string) (*auth.Identity, bool, error) {
	if !srv.b.AuthRequired() {
		return nil, false, nil
	}
	if owner == "" {
		return nil, false, errSessionUnauthenticated
	}
	old := &auth.Identity{Name: owner, Account: acc}
	if acc == broker.GlobalAccount {
		old.Account = "" // as the Authenticator names it
	}
	id, err := srv.b.Resolve(bg, old, auth.ConnMQTT)
	if errors.Is(err, broker.ErrConnType) {
		id, err = srv.b.Resolve(bg, old, auth.ConnMQTTWS)
	}
	switch {
	case errors.Is(err, auth.ErrCannotResolve):
		return &auth.Identity{Name: owner, Account: acc, Perms: denyAll}, true, nil
	case err != nil:
		return nil, false, err
	case accountName(id) != acc:
		return nil, false, fmt.Errorf("mqtt: user %q moved from account %q to %q", owner, acc, accountName(id))
	}
	return id, false, nil
}

// denyAll is the stand-in permission of a suspended session.
var denyAll = &auth.Permissions{
	Publish:   &auth.SubjectPermission{Deny: []string{">"}},
	Subscribe: &auth.SubjectPermission{Deny: []string{">"}},
}

func accountName(id *auth.Identity) string {
	if id == nil || id.Account == "" {
		return broker.GlobalAccount
	}
	return id.Account
}

func (srv *server) check(err error) {
	if err != nil {
		srv.b.Logger().Error("mqtt: session store", "err", err)
	}
}

// queueOf is the queue group of the shared subscription a restored
// message on subj came through, if the session has one matching it
// (nil otherwise: checked as a plain subscription).
func (s *session) queueOf(subj []byte) []byte {
	for _, st := range s.subs {
		if st.q == nil {
			continue
		}
		for _, f := range st.nats {
			if subject.Match(f, subj) {
				return st.q
			}
		}
	}
	return nil
}
