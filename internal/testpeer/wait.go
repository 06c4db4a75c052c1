package testpeer

import (
	"testing"
	"time"
)

// WaitUntil polls cond until it holds, failing t after 20 s: tests share
// a busy machine, so they wait for a condition, never for a fixed sleep.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
