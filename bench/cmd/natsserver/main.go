// Command natsserver runs an embedded nats-server (github.com/nats-io/
// nats-server/v2) for the natsbench driver. It prints "LISTEN host:port" on
// stdout once ready for connections, and exits when stdin reaches EOF (the
// driver closed its pipe or died) or on SIGINT/SIGTERM.
//
// With -ws-port it also enables nats-server's WebSocket listener (plain
// ws://, no_tls) and prints "WSLISTEN host:port" before the LISTEN line,
// so LISTEN still means every listener is ready.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	host := flag.String("host", "127.0.0.1", "bind `HOST`")
	port := flag.Int("port", 0, "NATS `PORT` (0: pick a free one)")
	wsPort := flag.Int("ws-port", -1, "also serve NATS over WebSocket on `PORT` (0: pick a free one; -1: no WebSocket listener)")
	flag.Parse()

	p := *port
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts := &server.Options{
		Host:   *host,
		Port:   p,
		NoLog:  true,
		NoSigs: true,
		// Same per-server connection ceiling as busbar's default, so the
		// idle-connection scenario is not refused by either.
		MaxConn: 64 * 1024,
	}
	if *wsPort >= 0 {
		wp := *wsPort
		if wp == 0 {
			wp = server.RANDOM_PORT
		}
		// Plain ws:// (nats-server insists on TLS unless NoTLS), no
		// compression: the same as busbar's default WebSocket options.
		opts.Websocket = server.WebsocketOpts{Host: *host, Port: wp, NoTLS: true}
	}
	s, err := server.NewServer(opts)
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
	if *wsPort >= 0 {
		ports := s.PortsInfo(10 * time.Second)
		if ports == nil || len(ports.WebSocket) == 0 {
			fatal(fmt.Errorf("no WebSocket listener after 10s"))
		}
		u, err := url.Parse(ports.WebSocket[0]) // ws://host:port
		if err != nil {
			fatal(err)
		}
		fmt.Printf("WSLISTEN %s\n", net.JoinHostPort(*host, u.Port()))
	}
	fmt.Printf("LISTEN %s\n", net.JoinHostPort(*host, strconv.Itoa(addr.Port)))

	runenv.WaitForStop(true)
	s.Shutdown()
	s.WaitForShutdown()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "natsserver:", err)
	os.Exit(1)
}
