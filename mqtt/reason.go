package mqtt

import (
	"errors"
	"fmt"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// Reason Strings (5.0): a short text beside the reason code of a refusal
// the user has to act on (CONNACK, SUBACK, PUBACK/PUBREC, DISCONNECT).
// Each is fixed here, with at most the server's own limits in it: never a
// credential, nor anything else the client sent (a topic could be 64 KiB).
// A client whose CONNECT set Request Problem Information to 0 gets them
// only on CONNACK and DISCONNECT [MQTT-3.1.2-29]; one that would push a
// packet over the client's Maximum Packet Size is left out
// ([MQTT-3.2.2-19], [MQTT-3.4.2-2], [MQTT-3.5.2-2], [MQTT-3.9.2-1],
// [MQTT-3.14.2-3]).

// Reason Strings that do not depend on a limit.
const (
	reasonPublishDenied   = "not authorized to publish to this topic"
	reasonSubscribeDenied = "not authorized to subscribe to this topic filter"
	reasonAuthFailed      = "not authorized: authentication failed"
	reasonBadLogin        = "bad user name or password"
	reasonUserConns       = "this user's max_connections is reached"
	reasonServerConns     = "the server's max_connections is reached"
	reasonWillTopic       = "the will topic is not a valid topic name"
	reasonWillDenied      = "not authorized to publish to the will topic"
	reasonRecvMaxZero     = "Receive Maximum must not be 0"
	reasonClientIDOwned   = "not authorized to use this client identifier"
	reasonStore           = "the session store is unavailable: try again later"
	reasonTopicName       = "topic name not valid here (no wildcards, whitespace or empty levels a subject cannot carry)"
	reasonTakenOver       = "another connection with this client identifier took the session over"
	reasonRevoked         = "no longer authorized after a configuration reload"
	reasonAccountChanged  = "the user's account changed in a configuration reload: connect again"
)

// reasoned is an error with the Reason String sent with the CONNACK or
// DISCONNECT the error ends the connection with.
type reasoned struct {
	err    error
	reason string
}

func (e *reasoned) Error() string { return e.err.Error() }
func (e *reasoned) Unwrap() error { return e.err }

// withReason gives err a Reason String for the client.
func withReason(err error, reason string) error { return &reasoned{err: err, reason: reason} }

// reasonOf is err's Reason String, or "".
func reasonOf(err error) string {
	var r *reasoned
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}

// problemInfo reports whether a packet of type t may carry a Reason
// String to this client [MQTT-3.1.2-29].
func (c *conn) problemInfo(t packet.Type) bool {
	switch t {
	case packet.Connack, packet.Disconnect:
		return true
	}
	return !c.noProblem
}

// encodeWithReason encodes a 5.0 packet of type t whose properties are
// props with reason as its Reason String, when the client takes one there
// and it still fits the client's Maximum Packet Size; else without it.
func (c *conn) encodeWithReason(t packet.Type, props *packet.Properties, reason string, enc func() []byte) []byte {
	if c.v == packet.V5 && reason != "" && c.problemInfo(t) {
		props.SetReasonString([]byte(reason))
		if b := enc(); c.clientMax == 0 || len(b) <= c.clientMax {
			return b
		}
		props.Clear(packet.PropReasonString)
	}
	return enc()
}

// appendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP to dst, with a
// Reason String when reason is set, as encodeWithReason does (without its
// closure: dst is often a caller's stack array).
func (c *conn) appendAck(dst []byte, t packet.Type, id uint16, code packet.Code, reason string) []byte {
	ap := packet.AckPacket{Type: t, PacketID: id, Code: code}
	if c.v == packet.V5 && reason != "" && c.problemInfo(t) {
		ap.Props.SetReasonString([]byte(reason))
		n := len(dst)
		if dst = packet.AppendAck(dst, c.v, &ap); c.clientMax == 0 || len(dst)-n <= c.clientMax {
			return dst
		}
		dst = dst[:n]
		ap.Props.Clear(packet.PropReasonString)
	}
	return packet.AppendAck(dst, c.v, &ap)
}

// connackRefusal is the CONNACK refusing a connection with code, and the
// Reason String why carries.
func (c *conn) connackRefusal(code packet.Code, why error) []byte {
	ack := packet.ConnackPacket{Code: code}
	return c.encodeWithReason(packet.Connack, &ack.Props, reasonOf(why), func() []byte {
		return packet.AppendConnack(nil, c.v, &ack)
	})
}

// suback is the SUBACK for id with codes, explaining the first refusal
// the user can act on.
func (c *conn) suback(id uint16, codes []packet.Code) []byte {
	sp := packet.SubackPacket{PacketID: id, Codes: codes}
	reason := ""
	for _, code := range codes {
		switch code {
		case packet.NotAuthorized:
			reason = reasonSubscribeDenied
		case packet.QuotaExceeded:
			reason = fmt.Sprintf("too many QoS 1 and 2 subscriptions: each may hold max_ack_pending (%d) messages in flight, 65535 in all", c.srv.opts.MaxAckPending)
		}
		if reason != "" {
			break
		}
	}
	return c.encodeWithReason(packet.Suback, &sp.Props, reason, func() []byte { return packet.AppendSuback(nil, c.v, &sp) })
}

// disconnect is the DISCONNECT telling a 5.0 client why its connection
// ends with code: the Reason String the error carries, or one the code
// alone explains.
func (c *conn) disconnect(code packet.Code, why error) []byte {
	reason := reasonOf(why)
	if reason == "" {
		switch code {
		case packet.KeepAliveTimeout:
			reason = fmt.Sprintf("no packet within 1.5 times the keep alive of %v", c.keepAlive)
		case packet.SessionTakenOver:
			reason = reasonTakenOver
		case packet.PacketTooLarge:
			reason = fmt.Sprintf("a packet over the server's Maximum Packet Size of %d bytes", c.maxPacket)
		case packet.ReceiveMaxExceeded:
			reason = c.receiveMaxReason()
		}
	}
	dp := packet.DisconnectPacket{Code: code}
	return c.encodeWithReason(packet.Disconnect, &dp.Props, reason, func() []byte { return packet.AppendDisconnect(nil, c.v, &dp) })
}

// aliasReason explains a topic alias the server refuses.
func (c *conn) aliasReason(a uint16) string {
	if a == 0 {
		return "topic alias 0 is not valid"
	}
	return fmt.Sprintf("topic alias %d is over the server's Topic Alias Maximum (%d)", a, c.aliasMax)
}

func (c *conn) receiveMaxReason() string {
	return fmt.Sprintf("more than Receive Maximum (%d) QoS 1 and 2 PUBLISH packets unacknowledged", c.srv.opts.ReceiveMaximum)
}

// reloadReason gives a connection a reload closes the reason code that
// tells a 5.0 client why: 0x87 when its identity is refused now, 0x98
// when its user moved to another account.
func reloadReason(reason error) error {
	var code packet.Code
	switch {
	case reason == nil || errors.As(reason, &code):
		return reason
	case errors.Is(reason, broker.ErrAccountChanged):
		return withReason(fmt.Errorf("%w: %w", packet.AdministrativeAction, reason), reasonAccountChanged)
	case errors.Is(reason, auth.ErrNotAuthorized):
		return withReason(fmt.Errorf("%w: %w", packet.NotAuthorized, reason), reasonRevoked)
	}
	return reason
}

// receiveMaxExceeded is the error ending a connection whose client sent
// one QoS 1 or 2 PUBLISH more than the server's Receive Maximum allows
// unacknowledged (5.0 §3.3.4, §4.9: DISCONNECT 0x93).
func (c *conn) receiveMaxExceeded() error {
	return fmt.Errorf("%w: more than %d QoS 1 and 2 PUBLISH packets unacknowledged [MQTT-3.3.4-7]", packet.ReceiveMaxExceeded, c.srv.opts.ReceiveMaximum)
}
