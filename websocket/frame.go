package websocket

import "github.com/busbar/busbar/internal/wsframe"

// WebSocket close codes (RFC 6455 §7.4) and the application codes busbar
// uses for refusals in on_failure: "close" mode. The frame codec is
// internal/wsframe.
const (
	CloseNormal          = wsframe.CloseNormal
	CloseGoingAway       = 1001
	CloseProtocolError   = wsframe.CloseProtocolError
	CloseNoStatus        = wsframe.CloseNoStatus       // never sent: "no code in the frame"
	CloseInvalidPayload  = wsframe.CloseInvalidPayload // text that is not UTF-8
	ClosePolicyViolation = 1008                        // refused after the upgrade (nats-server: authorization)
	CloseMessageTooBig   = wsframe.CloseMessageTooBig
	CloseInternalError   = 1011
	CloseTryAgainLater   = 1013 // (busbar, on_failure: close) over a connection limit
	CloseUnauthorized    = 4401 // (busbar, on_failure: close) the HTTP 401 as a close code
	CloseForbidden       = 4403 // (busbar, on_failure: close) the HTTP 403 as a close code
)
