// Package matrix holds only tests: the permission matrix of issue 15.
//
// Rows are the paths a message takes through a broker (live publish, will,
// retained set and replay, offline queue, restored after a restart with the
// file store, after a reload, leaf in/out against a real nats-server hub,
// account imports, in-process clients); columns are the transports (NATS
// over TCP and WebSocket, MQTT 3.1.1, 5.0 and over WebSocket, in-process)
// crossed with the checks (publish allow/deny, subscribe allow/deny,
// account isolation). Every broker is built from configuration text, as
// cmd/busbar builds it, and every client is a real one (nats.go, paho v3,
// paho v5, broker.Local), so the matrix depends on no internals.
//
// Each cell proves both halves: the allowed message arrives, and the
// forbidden one does not. A forbidden message is published (and flushed,
// acknowledged or returned, so it has been routed) before the allowed
// one; a subscriber's queue is ordered, so once the allowed one is in, a
// forbidden one would have been seen first. No cell sleeps to wait.
package matrix
