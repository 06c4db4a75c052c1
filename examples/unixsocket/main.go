// Command unixsocket is a host application with a transport of its own:
// NATS over a Unix socket, configured from the file by a block of its own
// beside the built-in ones,
//
//	port: 4222
//	unix { path: "/tmp/busbar.sock", mode: "0660" }
//
// transport.go registers the block from init (config.RegisterTransport:
// its name, how to read it, how to build the transport), so config.Load
// reads it with positions in its errors, server.Start builds, binds and
// serves it after the built-in listeners, and Shutdown closes it.
//
//	go run ./examples/unixsocket -c examples/unixsocket/testdata/unix.conf
//	nats -s nats://127.0.0.1:4222 sub 'greet.>'
//	# and from a Go client on the same host:
//	nats.Connect("nats://localhost", nats.SetCustomDialer(unixDialer("/tmp/busbar.sock")))
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/server"
)

// unixDialer is a nats.go CustomDialer that connects to a Unix socket
// whatever address nats.go asks for.
type unixDialer string

func (d unixDialer) Dial(_, _ string) (net.Conn, error) {
	return net.DialTimeout("unix", string(d), 5*time.Second)
}

// Start runs busbar from cfg: every listener the file names, the unix {}
// one included.
func Start(cfg *config.Config, logger *slog.Logger) (*server.Server, error) {
	return server.Start(cfg, server.Options{Logger: logger})
}

func main() {
	file := flag.String("c", "testdata/unix.conf", "configuration `FILE`")
	flag.Parse()
	cfg, err := config.Load(*file) // FILE:LINE:COL: unknown key "colour" in unix
	if err != nil {
		log.Fatal(err)
	}
	s, err := Start(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
}
