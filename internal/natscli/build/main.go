// Command build builds the NATS command-line tool the tests run
// (internal/natscli.Version) into its cache, so scripts/test pays for
// the build once, before the tests, and reports a failure plainly.
package main

import (
	"fmt"
	"os"

	"github.com/busbar/busbar/internal/natscli"
)

func main() {
	bin, err := natscli.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
