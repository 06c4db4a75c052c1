// Package store is the broker's persistence seam: MQTT sessions, their
// in-flight QoS 1/2 messages, inbound QoS 2 packet ids and retained
// messages. Memory is the default; store/filestore keeps the
// same contract on disk.
//
// Contract: a call that returns nil has made its effect durable (for a
// durable Store: on disk), so a transport may acknowledge after it
// (PUBACK/PUBREC). Calls may block to group-commit; they are safe for
// concurrent use. Records are values owned by the Store once passed in:
// callers must not modify their slices afterwards.
package store

import "context"

// Message is a stored message in canonical NATS form plus its MQTT state.
type Message struct {
	Subject []byte
	Payload []byte
	QoS     uint8
	Retain  bool
	// Props are the transport's extras: for MQTT the 5.0 properties a
	// PUBLISH forwards, as encoded on the wire (property length first);
	// opaque here.
	Props []byte
	// Expires is when the message expires, in Unix nanoseconds (MQTT 5.0
	// Message Expiry); 0: never. Absolute, so the time left counts down
	// across a restart.
	Expires int64
	// ID is the identity a PublishLog gave an acknowledged MQTT publish
	// (shared stores only; "" otherwise, and not kept by the file store):
	// a message stored for a session keeps it, so a replay of the log
	// skips what the session holds already.
	ID string `json:",omitempty"`
}

// Subscription is one MQTT subscription of a session.
type Subscription struct {
	Filter            string // as the client wrote it, $share/group/ included
	QoS               uint8
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    uint8
	SubID             uint32
}

// Session is an MQTT session's lasting state.
type Session struct {
	// ClientID is the session's key: the MQTT client identifier, prefixed
	// with the account name and a NUL byte outside the global account
	// (sessions belong to an account). Every per-session call takes it.
	ClientID string
	Owner    string // identity that created it
	Expiry   int64  // seconds after disconnect; -1: never
	Subs     []Subscription
	// KeepSubs makes SaveSession leave the stored subscriptions as they
	// are (Subs is ignored): a transport that changes them one at a time
	// (PutSubscription, DeleteSubscription) saves the rest of the session
	// without rewriting them. Otherwise Subs replaces them.
	KeepSubs  bool
	Will      *Message
	WillDelay int64 // seconds
}

// Inflight is an outbound QoS 1/2 message sent (or queued) to a session.
// Seq identifies it within its session (assigned in delivery order, never
// reused); a queued message is put with PacketID 0 and put again, same
// Seq, once sent with a packet id.
type Inflight struct {
	Seq      uint64
	PacketID uint16 // 0 while queued
	Released bool   // PUBREC received, PUBREL sent
	Msg      Message
}

// Kind names a Record's type in Load.
type Kind uint8

// Record kinds, in the order Load replays them.
const (
	KindSession Kind = iota + 1
	KindInflight
	KindInbound
	KindRetained
)

// Record is one item Load replays: the field matching Kind is set.
type Record struct {
	Kind     Kind
	ClientID string
	Session  *Session
	Inflight *Inflight
	Inbound  uint16 // a QoS 2 packet id awaiting PUBREL
	Retained *Message
	// Key is the key a KindRetained record was stored under (SetRetained's
	// subject argument).
	Key string
}

// Store keeps broker state across restarts.
type Store interface {
	// SaveSession stores or replaces the session s.ClientID (its
	// subscriptions too unless s.KeepSubs).
	SaveSession(ctx context.Context, s *Session) error
	// PutSubscription adds one subscription to a stored session, or
	// replaces the one with the same Filter; DeleteSubscription removes
	// it. Their cost does not grow with the number of subscriptions the
	// session has (a SUBSCRIBE writes one record, not the session).
	PutSubscription(ctx context.Context, clientID string, sub *Subscription) error
	DeleteSubscription(ctx context.Context, clientID, filter string) error
	// DeleteSession removes the session and everything stored for it.
	DeleteSession(ctx context.Context, clientID string) error
	// PutInflight adds an outbound message, or replaces the one with the
	// same Seq (keeping its place in the order).
	PutInflight(ctx context.Context, clientID string, m *Inflight) error
	// Release marks an in-flight QoS 2 message as past PUBREC.
	Release(ctx context.Context, clientID string, seq uint64) error
	// AckInflight removes an outbound message (acknowledged, expired or
	// dropped).
	AckInflight(ctx context.Context, clientID string, seq uint64) error
	PutInbound(ctx context.Context, clientID string, packetID uint16) error
	DeleteInbound(ctx context.Context, clientID string, packetID uint16) error
	// SetRetained stores m under key, or deletes it when m is nil or its
	// payload is empty. The broker's key is the subject, prefixed with the
	// account name and a NUL byte outside the global account
	// (broker.RetainedKey); Load reports it in Record.Key.
	SetRetained(ctx context.Context, key string, m *Message) error
	// Load replays everything stored: sessions first (with their
	// subscriptions, by filter), then each session's in-flight messages in
	// the order they were put and its inbound ids, then retained messages.
	Load(ctx context.Context, fn func(Record) error) error
	Close() error
}

// Grouped is a Store that commits in groups (group commit): its write
// calls return once the write is ordered, before it is durable, and
// Durable runs fn once every write issued before the call is durable (err
// non-nil: it never will be; the store failed). A transport acknowledges
// from fn. Sync blocks until then. Stores that are not Grouped are
// durable when each call returns.
//
// Begin and End bracket writes that must survive a crash together or not
// at all (a QoS 2 PUBLISH: the subscribers' records and the packet id):
// no commit group ends between them. Brackets may nest across goroutines;
// keep them short.
type Grouped interface {
	Durable(fn func(err error))
	Sync(ctx context.Context) error
	Begin()
	End()
}
