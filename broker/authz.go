package broker

import (
	"fmt"
	"sync"
	"time"

	"github.com/busbar/busbar/auth"
)

// Authorization state the broker keeps beyond the static permission
// lists: connections per identity (a user's max_connections) and the reply
// subjects a connection may answer (allow_responses).

// NonceRequired reports whether transports must send a nonce (NKEY and
// NATS JWT users sign it).
func (b *Broker) NonceRequired() bool {
	a := b.opts.Load().Authenticator
	return a != nil && auth.NonceRequired(a)
}

// userConns counts live connections per identity (account and name).
type userConns struct {
	mu sync.Mutex
	n  map[string]int
}

// Admit records who the client authenticated as, after checking the
// identity's own connection limit (over it: ErrMaxConnections, and the
// caller closes the connection). Read loop only, before any publish or
// subscribe of that identity.
func (s *Session) Admit(id *auth.Identity) error {
	if id != nil && id.MaxConns > 0 {
		key := id.Account + "\x00" + id.Name
		u := &s.b.users
		u.mu.Lock()
		if u.n[key] >= id.MaxConns {
			u.mu.Unlock()
			return fmt.Errorf("%w: user %q", ErrMaxConnections, id.Name)
		}
		if u.n == nil {
			u.n = make(map[string]int)
		}
		u.n[key]++
		u.mu.Unlock()
		s.userKey = key
	}
	if id != nil && id.Perms.ResponseLimits() != nil {
		r := id.Perms.ResponseLimits()
		s.resp.Store(&replyPerms{max: r.Max, ttl: r.Expires})
	}
	s.SetIdentity(id)
	s.admitted() // WatchConns (events.go)
	return nil
}

// releaseUser gives back the identity's connection slot. Session.Close.
func (s *Session) releaseUser() {
	if s.userKey == "" {
		return
	}
	u := &s.b.users
	u.mu.Lock()
	if u.n[s.userKey]--; u.n[s.userKey] <= 0 {
		delete(u.n, s.userKey)
	}
	u.mu.Unlock()
}

// replyPerms tracks the reply subjects of requests delivered to a
// connection with allow_responses: each may be published to max times
// within ttl of its delivery (nats-server's semantics).
type replyPerms struct {
	max int
	ttl time.Duration

	mu      sync.Mutex
	replies map[string]*replyUse
	added   int // since the last prune
}

type replyUse struct {
	at time.Time
	n  int
}

// note records reply as answerable. The publisher's goroutine delivering
// a request to this connection.
func (r *replyPerms) note(reply []byte) {
	now := time.Now()
	r.mu.Lock()
	if r.replies == nil {
		r.replies = make(map[string]*replyUse)
	}
	if u := r.replies[string(reply)]; u != nil {
		u.at, u.n = now, 0
	} else {
		r.replies[string(reply)] = &replyUse{at: now}
	}
	if r.added++; r.added > 1024 {
		r.pruneLocked(now)
	}
	r.mu.Unlock()
}

func (r *replyPerms) pruneLocked(now time.Time) {
	for k, u := range r.replies {
		if u.n >= r.max || now.Sub(u.at) > r.ttl {
			delete(r.replies, k)
		}
	}
	r.added = 0
}

// allow uses one answer to subj if one is left. The connection's own
// read loop.
func (r *replyPerms) allow(subj []byte) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.replies[string(subj)]
	if u == nil {
		return false
	}
	if now.Sub(u.at) > r.ttl {
		delete(r.replies, string(subj))
		return false
	}
	u.n++
	if u.n >= r.max {
		delete(r.replies, string(subj))
	}
	return true
}

// replyAllowed: publishing to subj answers a request this session
// received (allow_responses). Publisher goroutine of s.
func (s *Session) replyAllowed(subj []byte) bool {
	r := s.resp.Load()
	return r != nil && r.allow(subj)
}

// noteReply records m's reply subject for a subscriber with
// allow_responses. Publisher goroutine, after a delivery to sub.
func noteReply(sub *Subscription, m *Message) {
	if len(m.Reply) > 0 && sub.sess != nil {
		if r := sub.sess.resp.Load(); r != nil {
			r.note(m.Reply)
		}
	}
}

// CanAdmit reports whether id is under its own connection limit now (a
// WebSocket handshake answers 503 before upgrading). Admit decides.
func (b *Broker) CanAdmit(id *auth.Identity) bool {
	if id == nil || id.MaxConns <= 0 {
		return true
	}
	u := &b.users
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[id.Account+"\x00"+id.Name] < id.MaxConns
}
