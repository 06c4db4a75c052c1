package mqtt

import (
	"errors"
	"fmt"

	"github.com/busbar/busbar/mqtt/packet"
)

// ErrBadTopic is returned for a topic or filter that cannot be mapped to a
// NATS subject (whitespace, or an empty topic).
var ErrBadTopic = errors.New("mqtt: topic cannot be mapped to a subject")

// Errors that end a connection, with the 5.0 reason code (the packet
// error they wrap) sent in a DISCONNECT or CONNACK when the version
// allows.
var (
	errFirstNotConnect = fmt.Errorf("%w: first packet is not CONNECT [MQTT-3.1.0-1]", packet.ProtocolError)
	errSecondConnect   = fmt.Errorf("%w: second CONNECT [MQTT-3.1.0-2]", packet.ProtocolError)
	errKeepAlive       = fmt.Errorf("%w: no packet within 1.5 times the keep alive [MQTT-3.1.2-24]", packet.KeepAliveTimeout)
	errPreConnectFull  = fmt.Errorf("%w: connections that have not completed CONNECT hold the broker's budget for them", packet.ServerBusy)
	errEmptyClientID   = errors.New("mqtt: empty client id with clean session 0 [MQTT-3.1.3-8]")
	errReceiveMaxZero  = errors.New("mqtt: receive maximum 0 (5.0 3.1.2.11.3)")
	errDisconnected    = errors.New("mqtt: client disconnected")
)

// Errors of a SUBSCRIBE filter (SUBACK failure codes).
var (
	errSharedNoLocal = errors.New("mqtt: no-local on a shared subscription")
	errBadShare      = errors.New("mqtt: a shared subscription is $share/<group>/<filter>")
	errBadShareName  = errors.New("mqtt: a share name cannot hold + or #")
)

// errSessionUnauthenticated: a stored session made while the broker
// required no authentication, found when it requires it.
var errSessionUnauthenticated = errors.New("mqtt: the session was made without authentication")
