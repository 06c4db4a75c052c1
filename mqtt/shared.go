package mqtt

import (
	"context"
	"errors"
	"fmt"

	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
)

// Sessions shared by several brokers (a store.Shared, such as hub.Store):
// a session is held by one broker at a time. A CONNECT claims it here (a
// different identity is refused; the broker that held it drops its copy
// and the stored state is loaded here), the session's end gives it up, and
// a claim elsewhere drops it here (the connection is closed as taken
// over, 5.0 DISCONNECT 0x8E, and no will is sent).

// shared is the broker's Store when several brokers share it, else nil.
func (srv *server) shared() store.Shared {
	sh, _ := srv.b.Store().(store.Shared)
	return sh
}

// sharedReady refuses new connections while the shared state cannot be
// reached (CONNACK 0x88 / 3.1.1 0x03).
func (srv *server) sharedReady() error {
	if sh := srv.shared(); sh != nil {
		return sh.Ready()
	}
	return nil
}

// claim makes this broker the holder of session key for owner and loads
// the state another broker left. Read loop of the connecting client.
func (srv *server) claim(key, owner string) error {
	sh := srv.shared()
	if sh == nil {
		return nil
	}
	st, err := sh.Claim(context.Background(), key, owner)
	if errors.Is(err, store.ErrOwned) {
		return fmt.Errorf("mqtt: client id belongs to another identity: %w", err)
	}
	if err != nil {
		return err
	}
	srv.replayLog(srv.load(key, st), st)
	return nil
}

// load recreates, offline, the session another broker left (unless it is
// here already).
func (srv *server) load(key string, st *store.SessionState) *session {
	if st == nil || st.Session == nil {
		return nil
	}
	srv.mu.Lock()
	local := srv.sessions[key]
	srv.mu.Unlock()
	if local != nil {
		return nil // held here already
	}
	byID := map[string]*session{}
	srv.replay(store.Record{Kind: store.KindSession, ClientID: key, Session: st.Session}, byID)
	for _, f := range st.Inflight {
		srv.replay(store.Record{Kind: store.KindInflight, ClientID: key, Inflight: f}, byID)
	}
	for _, id := range st.Inbound {
		srv.replay(store.Record{Kind: store.KindInbound, ClientID: key, Inbound: id}, byID)
	}
	return byID[key]
}

// adopted: the broker that held the session is gone and this one took it
// over: the session lives here offline (its subscriptions keep what is
// published for it) until its client connects to any instance.
func (srv *server) adopted(key string, st *store.SessionState) {
	if s := srv.load(key, st); s != nil {
		srv.replayLog(s, st)
		s.mu.Lock()
		srv.armExpiry(s)
		s.mu.Unlock()
		srv.b.Logger().Info("mqtt: took over the session of an instance that is gone", "client_id", s.id)
	}
}

// unclaim gives the session up (it ended here).
func (srv *server) unclaim(key string) {
	if sh := srv.shared(); sh != nil {
		sh.Unclaim(key)
	}
}

// takenOver drops the session another broker claimed: its connection is
// closed as taken over (no will: the new connection's replaces it), its
// subscriptions leave the router, its stored state stays for the claimer.
func (srv *server) takenOver(key string) {
	srv.mu.Lock()
	s := srv.sessions[key]
	if s != nil {
		delete(srv.sessions, key)
	}
	srv.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	c := s.conn
	s.setConnLocked(nil)
	s.will = nil
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.releaseAllLocked() // and out of the offline total (limits.go)
	s.mu.Unlock()
	if c != nil {
		c.takenOver.Store(true)
		c.Close(fmt.Errorf("%w: session taken over on another instance", packet.SessionTakenOver))
	}
	s.bs.Close()
}
