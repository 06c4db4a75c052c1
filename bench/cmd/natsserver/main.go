// Command natsserver runs an embedded nats-server (github.com/nats-io/
// nats-server/v2) for the natsbench driver. It prints "LISTEN host:port" on
// stdout once ready for connections, and exits when stdin reaches EOF (the
// driver closed its pipe or died) or on SIGINT/SIGTERM.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	host := flag.String("host", "127.0.0.1", "bind `HOST`")
	port := flag.Int("port", 0, "NATS `PORT` (0: pick a free one)")
	flag.Parse()

	p := *port
	if p == 0 {
		p = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		Host:   *host,
		Port:   p,
		NoLog:  true,
		NoSigs: true,
		// Same per-server connection ceiling as busbar's default, so the
		// idle-connection scenario is not refused by either.
		MaxConn: 64 * 1024,
	})
	if err != nil {
		fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		fatal(fmt.Errorf("not ready for connections after 10s"))
	}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		fatal(fmt.Errorf("unexpected listener address %v", s.Addr()))
	}
	fmt.Printf("LISTEN %s\n", net.JoinHostPort(*host, strconv.Itoa(addr.Port)))

	waitForStop()
	s.Shutdown()
	s.WaitForShutdown()
}

// waitForStop blocks until stdin closes or a termination signal arrives.
func waitForStop() {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "natsserver:", err)
	os.Exit(1)
}
