package store

import (
	"context"
	"time"
)

// Shared is a Store several brokers use at once (hub.Store keeps MQTT
// state in a NATS hub's JetStream): one session is held by one broker at a
// time, and each broker follows the retained messages the others set.
type Shared interface {
	Store
	// Ready is nil while the shared state can be used; else why not
	// (ErrUnavailable wrapped).
	Ready() error
	// Claim makes this broker the holder of the session stored under key,
	// for the identity owner: ErrOwned when another identity owns it. When
	// another broker held it, Claim returns once that broker let go (or a
	// bound passed: it is gone) and gives the session's stored state (nil
	// when there is none), which the caller loads.
	Claim(ctx context.Context, key, owner string) (*SessionState, error)
	// Unclaim gives up the session under key (it ended here).
	Unclaim(key string)
	// OnTakeover registers fn, called when another broker claims a session
	// this broker holds: fn drops it here without deleting its state. Any
	// writes fn made are durable before the claimer loads the state.
	OnTakeover(fn func(key string))
	// OnAdopt registers fn, called when this broker took over a session
	// whose holder is gone (it stopped answering): fn recreates it here,
	// offline, from its stored state, so messages for it are kept until
	// its client comes back.
	OnAdopt(fn func(key string, st *SessionState))
	// OnRetained registers fn, called with the retained messages the
	// shared state holds (at start and whenever any broker changes one):
	// key as SetRetained's, m nil or empty for a deletion.
	OnRetained(fn func(key string, m *Message))
}

// SessionState is one session's stored state, as Load would replay it.
type SessionState struct {
	Session  *Session
	Inflight []*Inflight // in Seq order
	Inbound  []uint16
	// Gone, when set, is when the broker that held the session was last
	// known alive: it died without letting go (Claim found no holder to
	// answer, or the session was adopted), so messages published for the
	// session since may never have been stored; the loader replays them
	// from a PublishLog.
	Gone time.Time
	// Done are the publish log ids of QoS 2 messages the session
	// completed lately (shared stores that keep them): a replay skips
	// them as it skips those in Inflight.
	Done []string
}

// PublishLog is a Shared store that also keeps, for a while, every MQTT
// publish of QoS 1 or 2 any broker accepted (hub.Store: a stream in the
// hub), so that the messages a broker that died had not stored yet for the
// sessions it held are not lost: the broker that loads such a session
// replays what was logged since its holder was last alive.
type PublishLog interface {
	Shared
	// LogPublish writes m (its ID set, Subject the NATS subject) for
	// account, published by the session under from; like the Store's
	// other writes it is durable once a Durable issued after it runs.
	LogPublish(account, from string, m *Message) error
	// Replay calls fn, in log order, with each message logged for account
	// from a little before since (the holder may have been behind) up to
	// the last one logged when it starts, and from, its publisher's
	// session key.
	Replay(ctx context.Context, account string, since time.Time, fn func(from string, m *Message)) error
}
