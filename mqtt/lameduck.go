package mqtt

import (
	"errors"
	"fmt"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// shutdownReason gives a close for broker.ErrServerShutdown (Shutdown,
// and each close LameDuck spreads) the MQTT 5.0 reason code 0x8B, Server
// shutting down, so a 5.0 client gets a DISCONNECT saying so before the
// socket closes (and MQTT over WebSocket a 1001 close). 3.1.1 has no
// server DISCONNECT: its clients are just closed. Other reasons pass
// unchanged.
func shutdownReason(reason error) error {
	var code packet.Code
	if errors.Is(reason, broker.ErrServerShutdown) && !errors.As(reason, &code) {
		return fmt.Errorf("%w: %w", packet.ServerShuttingDown, reason)
	}
	return reason
}
