package broker

import (
	"slices"
	"sync/atomic"

	"github.com/busbar/busbar/auth"
)

// Message is one published message in canonical NATS form. Transports map
// their own topic syntax (MQTT) to Subject at the edge.
//
// Lifetime: a Message handed to Client.Deliver may be borrowed: its slices
// can point into the publisher's read buffer and are valid only until
// Deliver returns. A Client that keeps the message past the call (to write
// it later without copying) must keep the result of Stable instead, which
// copies the borrowed bytes at most once per publish and shares the copy
// with every other subscriber that asks.
type Message struct {
	Subject []byte // NATS subject, validated literal (no wildcards)
	Reply   []byte // reply subject, or nil
	Header  []byte // raw NATS header block ("NATS/1.0\r\n...\r\n\r\n"), or nil
	Payload []byte
	QoS     uint8  // MQTT quality of service the publisher asked for; 0 for NATS
	Retain  bool   // MQTT retain flag
	MQTT    bool   // published by an MQTT client (QoS and Retain are meaningful)
	pub     uint32 // which publish of its publisher this is (PublishID); in padding, no size cost
	// Ext is the one place for what a transport adds that the router
	// carries untouched and other transports ignore (see Extension).
	// Immutable once published, like the slices.
	Ext Extension

	origin Client // the publishing client, set by Session.Publish

	fanout     int      // deliveries this publish may make (set by Session.Publish)
	borrowed   bool     // slices alias a buffer the publisher will reuse
	ownPayload bool     // borrowed, but Payload itself is stable
	stable     *Message // the copy made by Stable for a borrowed message
}

// PublishID tells the publishes of one publisher (Origin) apart: every
// delivery of one publish sees the same value, the publisher's next
// publish another, even when it reuses m. A Client with several
// subscriptions matching one publish (MQTT overlapping subscriptions)
// keys on (m, Origin, PublishID) to send it once. Inside Deliver only.
func (m *Message) PublishID() uint32 { return m.pub }

// Borrow marks m as aliasing memory its publisher reuses after Publish
// returns (a read buffer). Subscribers that keep m must use m.Stable().
// Publisher goroutine only; resets the copy cached by a previous publish.
func (m *Message) Borrow() { m.borrowed, m.ownPayload, m.stable = true, false, nil }

// OwnPayload marks the Payload of a borrowed message as stable (it was
// allocated for this message alone): Stable then copies only the subject,
// reply and header. Publisher goroutine only, after Borrow.
func (m *Message) OwnPayload() { m.ownPayload = true }

// Stable returns a Message whose slices stay valid and unchanged forever.
// For a message that is not borrowed that is m itself; for a borrowed one
// it is one copy, made on the first call and shared by later calls. Called
// from the publisher's goroutine (inside Deliver) only.
func (m *Message) Stable() *Message {
	if !m.borrowed {
		return m
	}
	if m.stable != nil {
		return m.stable
	}
	n := len(m.Subject) + len(m.Reply) + len(m.Header)
	if !m.ownPayload {
		n += len(m.Payload)
	}
	buf := make([]byte, 0, n)
	c := &Message{QoS: m.QoS, Retain: m.Retain, MQTT: m.MQTT, Ext: m.Ext, origin: m.origin, pub: m.pub}
	buf, c.Subject = appendPart(buf, m.Subject)
	buf, c.Reply = appendPart(buf, m.Reply)
	buf, c.Header = appendPart(buf, m.Header)
	if m.ownPayload {
		c.Payload = m.Payload
	} else {
		_, c.Payload = appendPart(buf, m.Payload)
	}
	m.stable = c
	return c
}

// CopyTo copies m into dst, with the slices the publisher may reuse
// copied into buf (reused, returned grown) and a stable Payload shared.
// dst keeps m's origin and publish id, and is borrowed: it is valid until
// the caller reuses buf, and a subscriber that keeps it calls Stable.
// Publisher goroutine only, inside or after Publish.
func (m *Message) CopyTo(dst *Message, buf []byte) []byte {
	*dst = Message{QoS: m.QoS, Retain: m.Retain, MQTT: m.MQTT, Ext: m.Ext, origin: m.origin, pub: m.pub, borrowed: true}
	n := len(m.Subject) + len(m.Reply) + len(m.Header)
	if !m.PayloadStable() {
		n += len(m.Payload)
	}
	buf = slices.Grow(buf[:0], n)
	buf, dst.Subject = appendPart(buf, m.Subject)
	buf, dst.Reply = appendPart(buf, m.Reply)
	buf, dst.Header = appendPart(buf, m.Header)
	if m.PayloadStable() {
		dst.Payload, dst.ownPayload = m.Payload, true
	} else {
		buf, dst.Payload = appendPart(buf, m.Payload)
	}
	return buf
}

func appendPart(buf, p []byte) ([]byte, []byte) {
	if p == nil {
		return buf, nil
	}
	start := len(buf)
	buf = append(buf, p...)
	return buf, buf[start:len(buf):len(buf)]
}

// Fanout is how many subscriptions (plain ones, plus one per queue group)
// matched this publish: a Client uses it to choose between copying the
// payload and sharing one Stable copy. 0 outside a delivery.
func (m *Message) Fanout() int { return m.fanout }

// Origin is the client that published m (nil for the broker's own).
func (m *Message) Origin() Client { return m.origin }

// PayloadStable reports whether m.Payload may be kept without Stable.
func (m *Message) PayloadStable() bool { return !m.borrowed || m.ownPayload }

// Size is the number of bytes the message occupies on the NATS wire
// (headers plus payload), the figure max_payload limits.
func (m *Message) Size() int { return len(m.Header) + len(m.Payload) }

// Subscription is one interest in a subject filter. The broker owns its
// place in the router; the Client that created it owns Opaque (a NATS sid,
// an MQTT QoS and subscription id) and the broker never reads it.
type Subscription struct {
	Subject []byte // filter, may hold * and >
	Queue   []byte // queue group, or nil
	Client  Client
	Opaque  any

	// max is the number of deliveries after which the subscription ends
	// (NATS UNSUB sid max); 0 means unlimited. delivered counts them.
	sess      *Session                         // set by Session.Subscribe
	deny      atomic.Pointer[auth.Permissions] // subscribe deny entries this filter overlaps: checked per delivery; Reload replaces it
	max       atomic.Int64
	delivered atomic.Int64
	closed    atomic.Bool
}

// SetMax ends the subscription after n deliveries in total (0 = no limit).
// It reports false when n deliveries already happened: the caller removes it.
func (s *Subscription) SetMax(n int64) bool {
	s.max.Store(n)
	return n == 0 || s.delivered.Load() < n
}

// Delivered is the number of messages delivered so far.
func (s *Subscription) Delivered() int64 { return s.delivered.Load() }

// Closed reports whether the subscription ended (unsubscribed, or its
// auto-unsubscribe limit reached).
func (s *Subscription) Closed() bool { return s.closed.Load() }

// take counts one delivery. It reports whether the delivery may happen and
// whether it was the last one allowed by max. Safe from any goroutine.
func (s *Subscription) take() (ok, last bool) {
	if s.closed.Load() {
		return false, false
	}
	max := s.max.Load()
	if max == 0 {
		s.delivered.Add(1)
		return true, false
	}
	n := s.delivered.Add(1)
	if n > max {
		return false, false
	}
	return true, n == max
}

// Extension is a Message's typed extra: the router copies the reference
// and never looks inside. The ones in use are mqtt's MQTT 5.0 properties
// (with the message expiry), DeliverAs (a leaf link's JetStream push
// delivery) and StoredExt (a retained message's properties as the Store
// kept them). A receiving transport type-switches on the ones it knows.
// Everything else a Message carries is protocol-neutral or, for MQTT's
// QoS, Retain and MQTT, acted on by the broker itself (retained messages,
// the QoS an MQTT subscriber gets).
type Extension interface {
	// ExtensionName names the kind, for logs and tests.
	ExtensionName() string
}

// ExtensionName is "deliver-as".
func (DeliverAs) ExtensionName() string { return "deliver-as" }

// DeliverAs, as a Message's Ext, is the subject subscribers see instead
// of Subject, which routes the message: a JetStream push delivery from a
// hub travels on the consumer's deliver subject and reaches its client on
// the stream subject (nats-server's "$JS.ACK...@subject" form). Its bytes
// are the message's own (stable).
type DeliverAs []byte

// LogID, as a Message's Ext, is the identity a shared store's publish log
// gave an MQTT publish (store.PublishLog): the leaf link carries it to
// the other instances (a "Busbar-Id" header), so that the one storing the
// message for a session records it, and one replaying the log after a
// holder died skips what is stored already. An Extension of its own
// carries it with LogIDer.
type LogID string

// ExtensionName is "log-id".
func (LogID) ExtensionName() string { return "log-id" }

// MessageLogID is the id itself.
func (l LogID) MessageLogID() string { return string(l) }

// LogIDer is an Extension that carries a LogID.
type LogIDer interface {
	MessageLogID() string
}

// LogIDOf is m's LogID, or "".
func LogIDOf(m *Message) string {
	if x, ok := m.Ext.(LogIDer); ok {
		return x.MessageLogID()
	}
	return ""
}
