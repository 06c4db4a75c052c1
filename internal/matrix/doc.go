// Package matrix holds only tests: the permission matrix.
// Rows are the paths a message takes (live publish, will, retained set and
// replay, offline queue, restart with the file store, reload, leaf node,
// account imports, in-process clients), columns the transports crossed
// with the checks (publish allow/deny, subscribe allow/deny, account
// isolation). Brokers are built from configuration text and clients are
// real ones, so the matrix depends on no internals; matrix() in
// matrix_test.go is the table. The rows for state shared through a NATS
// hub's JetStream (retained messages and sessions across instances) need
// a hub cluster and live beside it: hub.TestGateAcrossInstances.
package matrix
