// Command mochipebble runs a mochi-mqtt server (github.com/mochi-mqtt/
// server/v2) with its pebble storage hook (hooks/storage/pebble, a pebble
// database in -store-dir) for durablebench to measure in its own process:
// otherwise as bench/cmd/mochi (default options, an allow-all auth hook,
// one TCP listener, logging at error level).
//
// Durability is the hook's Mode: "NoSync" (its default: pebble writes its
// WAL without syncing it) or, with -sync, "Sync" (every Set and Delete the
// hook makes is a synced pebble write). Either way the hook stores a QoS 1
// message for a subscriber when mochi hands it to that subscriber, which
// is after mochi has written the publisher's PUBACK (server.go,
// processPublish: the PUBACK, then publishToSubscribers); what is stored
// before the PUBACK is the PUBACK packet itself (its in-flight entry,
// without the payload), and it is deleted right after.
//
// It prints the listen address when ready and exits on SIGINT/SIGTERM or,
// with -stdin, when stdin closes.
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/busbar/busbar/bench/internal/runenv"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "TCP listen address")
	storeDir := flag.String("store-dir", "", "directory of the pebble database (required)")
	sync := flag.Bool("sync", false, "pebble hook Mode \"Sync\" (default: the hook's default, \"NoSync\")")
	watchStdin := flag.Bool("stdin", false, "exit when stdin closes")
	version := flag.Bool("version", false, "print mochi-mqtt's version and exit")
	flag.Parse()
	if *version {
		pv := "?"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "github.com/cockroachdb/pebble" {
					pv = d.Version
				}
			}
		}
		fmt.Printf("mochi-mqtt %s, pebble %s\n", mqtt.Version, pv)
		return
	}
	if *storeDir == "" {
		log.Fatal("-store-dir is required")
	}
	s := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		log.Fatal(err)
	}
	mode := pebble.NoSync
	if *sync {
		mode = pebble.Sync
	}
	if err := s.AddHook(new(pebble.Hook), &pebble.Options{Path: filepath.Join(*storeDir, "pebble"), Mode: mode}); err != nil {
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
