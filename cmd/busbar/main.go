// Command busbar runs the broker standalone. With no arguments it runs
// the embedded default of SPEC.md; flags follow nats-server's.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}
