package mqtt

// WithPreConnectBudget sets the budget of read buffers all connections
// before CONNECT may hold together (tests: the default is 64 MiB).
func WithPreConnectBudget(o Options, n int64) Options {
	o.preBudget = n
	return o
}
