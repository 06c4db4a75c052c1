package leafnode

import "errors"

// Sentinel errors, for callers to branch on with errors.Is. The text
// wrapped after a sentinel says what happened and, when the fix is on
// this side, what to change.
var (
	// Configuration (New).
	ErrNoURL  = errors.New("leafnode: a remote needs at least one URL")
	ErrBadURL = errors.New("leafnode: invalid remote URL")

	// Connecting to a hub.
	errDial      = errors.New("leafnode: cannot reach the hub (check the URL's host and port)")
	errTLS       = errors.New("leafnode: tls handshake with the hub failed (check the remote's tls {} block against the hub's certificate)")
	ErrWebSocket = errors.New("leafnode: websocket upgrade to the hub failed")
	errFirstInfo = errors.New("leafnode: no INFO from the hub")
	ErrWrongPort = errors.New("leafnode: the URL is not a hub's leafnode port (no leafnode INFO): use the port of the hub's leafnodes {} block")
	// ErrCredentials: the remote's credentials file or nkey seed cannot
	// be read or used.
	ErrCredentials = errors.New("leafnode: cannot use the remote's credentials")

	// A link that was up.
	ErrHubRefused = errors.New("leafnode: the hub closed the link")
	ErrLoop       = errors.New("leafnode: loop detected (this broker reaches the hub cluster twice in one account: remove one of the remotes)")
	ErrStale      = errors.New("leafnode: stale connection (the hub did not answer PING in time)")
	ErrClosed     = errors.New("leafnode: closed")

	// The leaf protocol from the hub; the link closes on any of them.
	errParse       = errors.New("leafnode: protocol parse error from the hub")
	errControlLine = errors.New("leafnode: control line from the hub too long")
	errPayload     = errors.New("leafnode: message from the hub larger than max_payload (raise max_payload to the hub's)")
	errUnknownOp   = errors.New("leafnode: unknown protocol operation from the hub")

	// WebSocket links, after the upgrade.
	errWSProtocol = errors.New("leafnode: websocket framing error from the hub")
	errWSClosed   = errors.New("leafnode: the hub closed the websocket")
)
