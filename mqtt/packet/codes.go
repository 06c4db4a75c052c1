package packet

import (
	"fmt"
	"strconv"
	"strings"
)

// Type is an MQTT control packet type (the high nibble of the first byte).
type Type byte

// Control packet types (3.1.1 §2.2.1, 5.0 §2.1.2). AUTH exists only in 5.0.
const (
	Connect Type = iota + 1
	Connack
	Publish
	Puback
	Pubrec
	Pubrel
	Pubcomp
	Subscribe
	Suback
	Unsubscribe
	Unsuback
	Pingreq
	Pingresp
	Disconnect
	Auth
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Version is the MQTT protocol level carried in CONNECT.
type Version byte

// Protocol levels: 3.1 ("MQIsdp"), 3.1.1 and 5.0 ("MQTT").
const (
	V31  Version = 3
	V311 Version = 4
	V5   Version = 5
)

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "Version(" + strconv.Itoa(int(v)) + ")"
}

// Code is an MQTT 5.0 reason code, or a 3.1.1 return code (CONNACK 0x00-0x05,
// SUBACK 0x00-0x02 and 0x80, which share the 5.0 values). It implements error,
// so decode errors wrap one (errors.Is(err, packet.MalformedPacket)) and the
// session layer can pick the CONNACK or DISCONNECT code from the error.
type Code byte

// MQTT 5.0 reason codes (5.0 §2.4). Several share a value.
const (
	Success                    Code = 0x00 // also Normal disconnection, Granted QoS 0
	NormalDisconnection        Code = 0x00
	GrantedQoS0                Code = 0x00
	GrantedQoS1                Code = 0x01
	GrantedQoS2                Code = 0x02
	DisconnectWithWill         Code = 0x04
	NoMatchingSubscribers      Code = 0x10
	NoSubscriptionExisted      Code = 0x11
	ContinueAuthentication     Code = 0x18
	ReAuthenticate             Code = 0x19
	UnspecifiedError           Code = 0x80
	MalformedPacket            Code = 0x81
	ProtocolError              Code = 0x82
	ImplementationSpecific     Code = 0x83
	UnsupportedProtocolVersion Code = 0x84
	ClientIDNotValid           Code = 0x85
	BadUserOrPassword          Code = 0x86
	NotAuthorized              Code = 0x87
	ServerUnavailable          Code = 0x88
	ServerBusy                 Code = 0x89
	Banned                     Code = 0x8A
	ServerShuttingDown         Code = 0x8B
	BadAuthMethod              Code = 0x8C
	KeepAliveTimeout           Code = 0x8D
	SessionTakenOver           Code = 0x8E
	TopicFilterInvalid         Code = 0x8F
	TopicNameInvalid           Code = 0x90
	PacketIDInUse              Code = 0x91
	PacketIDNotFound           Code = 0x92
	ReceiveMaxExceeded         Code = 0x93
	TopicAliasInvalid          Code = 0x94
	PacketTooLarge             Code = 0x95
	MessageRateTooHigh         Code = 0x96
	QuotaExceeded              Code = 0x97
	AdministrativeAction       Code = 0x98
	PayloadFormatInvalid       Code = 0x99
	RetainNotSupported         Code = 0x9A
	QoSNotSupported            Code = 0x9B
	UseAnotherServer           Code = 0x9C
	ServerMoved                Code = 0x9D
	SharedSubNotSupported      Code = 0x9E
	ConnectionRateExceeded     Code = 0x9F
	MaxConnectTime             Code = 0xA0
	SubIDNotSupported          Code = 0xA1
	WildcardSubNotSupported    Code = 0xA2
)

// MQTT 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3).
const (
	V311Accepted             Code = 0x00
	V311UnacceptableProtocol Code = 0x01
	V311IdentifierRejected   Code = 0x02
	V311ServerUnavailable    Code = 0x03
	V311BadUserOrPassword    Code = 0x04
	V311NotAuthorized        Code = 0x05
)

var codeNames = map[Code]string{
	Success:                    "success",
	GrantedQoS1:                "granted QoS 1",
	GrantedQoS2:                "granted QoS 2",
	DisconnectWithWill:         "disconnect with will message",
	NoMatchingSubscribers:      "no matching subscribers",
	NoSubscriptionExisted:      "no subscription existed",
	ContinueAuthentication:     "continue authentication",
	ReAuthenticate:             "re-authenticate",
	UnspecifiedError:           "unspecified error",
	MalformedPacket:            "malformed packet",
	ProtocolError:              "protocol error",
	ImplementationSpecific:     "implementation specific error",
	UnsupportedProtocolVersion: "unsupported protocol version",
	ClientIDNotValid:           "client identifier not valid",
	BadUserOrPassword:          "bad user name or password",
	NotAuthorized:              "not authorized",
	ServerUnavailable:          "server unavailable",
	ServerBusy:                 "server busy",
	Banned:                     "banned",
	ServerShuttingDown:         "server shutting down",
	BadAuthMethod:              "bad authentication method",
	KeepAliveTimeout:           "keep alive timeout",
	SessionTakenOver:           "session taken over",
	TopicFilterInvalid:         "topic filter invalid",
	TopicNameInvalid:           "topic name invalid",
	PacketIDInUse:              "packet identifier in use",
	PacketIDNotFound:           "packet identifier not found",
	ReceiveMaxExceeded:         "receive maximum exceeded",
	TopicAliasInvalid:          "topic alias invalid",
	PacketTooLarge:             "packet too large",
	MessageRateTooHigh:         "message rate too high",
	QuotaExceeded:              "quota exceeded",
	AdministrativeAction:       "administrative action",
	PayloadFormatInvalid:       "payload format invalid",
	RetainNotSupported:         "retain not supported",
	QoSNotSupported:            "QoS not supported",
	UseAnotherServer:           "use another server",
	ServerMoved:                "server moved",
	SharedSubNotSupported:      "shared subscriptions not supported",
	ConnectionRateExceeded:     "connection rate exceeded",
	MaxConnectTime:             "maximum connect time",
	SubIDNotSupported:          "subscription identifiers not supported",
	WildcardSubNotSupported:    "wildcard subscriptions not supported",
}

// Error returns "mqtt: " and the 5.0 name of the code.
func (c Code) Error() string {
	if s, ok := codeNames[c]; ok {
		return "mqtt: " + s
	}
	return "mqtt: reason code 0x" + strconv.FormatUint(uint64(c), 16)
}

// V311 is V311ReturnCode(c).
func (c Code) V311() Code { return V311ReturnCode(c) }

// V311ReturnCode maps a 5.0 CONNACK reason code to the 3.1.1 return code
// (3.1.1 §3.2.2.3): 0x84 → 0x01 unacceptable protocol version, 0x85 → 0x02
// identifier rejected, 0x86 → 0x04 bad user name or password, 0x87 and 0x8A
// (banned) → 0x05 not authorized, any other error → 0x03 server unavailable.
// Codes 0x00-0x05 are returned unchanged, so mapping twice is harmless.
func V311ReturnCode(c Code) Code {
	switch {
	case c <= V311NotAuthorized:
		return c
	case c == UnsupportedProtocolVersion:
		return V311UnacceptableProtocol
	case c == ClientIDNotValid:
		return V311IdentifierRejected
	case c == BadUserOrPassword, c == BadAuthMethod:
		return V311BadUserOrPassword
	case c == NotAuthorized, c == Banned:
		return V311NotAuthorized
	}
	return V311ServerUnavailable
}

// Reason codes each 5.0 packet may carry (5.0 §3.2.2.2, §3.4.2.1, §3.5.2.1,
// §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1).
const (
	connackCodes    = "\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8c\x90\x95\x97\x99\x9a\x9b\x9c\x9d\x9f"
	pubackCodes     = "\x00\x10\x80\x83\x87\x90\x91\x97\x99" // PUBACK, PUBREC
	pubrelCodes     = "\x00\x92"                             // PUBREL, PUBCOMP
	subackCodes     = "\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2"
	unsubackCodes   = "\x00\x11\x80\x83\x87\x8f\x91"
	disconnectCodes = "\x00\x04\x80\x81\x82\x83\x87\x89\x8b\x8d\x8e\x8f\x90\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2"
	authCodes       = "\x00\x18\x19"
)

// validCode reports whether c is a reason code packet type t may carry in 5.0.
func validCode(t Type, c Code) bool {
	var set string
	switch t {
	case Connack:
		set = connackCodes
	case Puback, Pubrec:
		set = pubackCodes
	case Pubrel, Pubcomp:
		set = pubrelCodes
	case Suback:
		set = subackCodes
	case Unsuback:
		set = unsubackCodes
	case Disconnect:
		set = disconnectCodes
	case Auth:
		set = authCodes
	default:
		return false
	}
	return strings.IndexByte(set, byte(c)) >= 0
}

// checkCode returns a ProtocolError for a reason code t may not carry.
func checkCode(t Type, c Code) error {
	if validCode(t, c) {
		return nil
	}
	return fmt.Errorf("%w: reason code %#x is not valid in %v", ProtocolError, byte(c), t)
}
