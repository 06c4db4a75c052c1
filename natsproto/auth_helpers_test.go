package natsproto_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/busbar/busbar/natsproto"
)

type (
	contextT = context.Context
	netConn  = net.Conn
)

func natsInProc(s *server) interface{ InProcessConn() (netConn, error) } {
	return natsproto.InProcess(s.b)
}

// logSink collects every log line of the auth tests at trace level, so
// TestAuthSecretsNeverLogged can scan them for secrets.
var logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type sinkWriter struct{}

func (sinkWriter) Write(p []byte) (int, error) {
	logSink.mu.Lock()
	defer logSink.mu.Unlock()
	return logSink.buf.Write(p)
}

// levelTrace is below Debug: everything is logged.
const levelTrace = slog.Level(-8)

func testLogger(testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(sinkWriter{}, &slog.HandlerOptions{Level: levelTrace}))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
