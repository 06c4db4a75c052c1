// Command mochi runs a mochi-mqtt server (github.com/mochi-mqtt/server/v2)
// for mqttpeer to measure in its own process, as busbar-mqtt does for
// busbar: default options (no persistence hook, no inline client), an
// allow-all auth hook and one TCP listener on -addr. It prints the listen
// address when ready and exits on SIGINT/SIGTERM or when stdin closes.
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/busbar/busbar/bench/internal/runenv"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "TCP listen address")
	watchStdin := flag.Bool("stdin", false, "exit when stdin closes")
	version := flag.Bool("version", false, "print mochi-mqtt's version and exit")
	flag.Parse()
	if *version {
		fmt.Println("mochi-mqtt", mqtt.Version)
		return
	}
	s := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		log.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		log.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(*addr)
	runenv.WaitForStop(*watchStdin)
	_ = s.Close()
}
