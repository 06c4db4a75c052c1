package mqtt

import "time"

// WithPreConnectBudget sets the budget of read buffers all connections
// before CONNECT may hold together (tests: the default is 64 MiB).
func WithPreConnectBudget(o Options, n int64) Options {
	o.preBudget = n
	return o
}

// WithRecentWindow sets how long before a SUBSCRIBE was read a publish
// may have been read and still reach the new subscription (recent.go;
// tests: a long one makes the catch-up certain).
func WithRecentWindow(o Options, d time.Duration) Options {
	o.recentWindow = d
	return o
}
