// Command busbar runs the broker standalone. With no arguments it runs
// the embedded default (NATS, MQTT, WebSocket and monitoring on
// 127.0.0.1, no authentication, in memory); flags follow nats-server's
// (busbar -h), the configuration file is nats-server's format
// (docs/CONFIG.md).
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}
