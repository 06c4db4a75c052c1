package matrix

import (
	"fmt"
	"testing"
	"time"
)

// Row catchup: a new MQTT subscription catches up on the MQTT publishes
// read just before its SUBSCRIBE (mqtt/recent.go), through the broker's
// way out: of two messages published before the SUBSCRIBE, the
// subscriber gets the one its identity may receive, never the other. The
// catch-up reaches 50 ms back; on a loaded machine the time between the
// publisher's PUBACK and the SUBSCRIBE may be longer, so the check is
// repeated until one catch-up happened (the forbidden message must never
// arrive, in any attempt).
func catchUpSub(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	pub := dial(t, s, mqtt5, "all")
	for attempt := range 20 {
		n := fmt.Sprint(attempt)
		secret, open, mark := prefix+".secret."+n, prefix+".open."+n, prefix+".open.mark"+n
		c := dial(t, s, x, "sub") // connected before the publishes: they may be caught up
		for _, subj := range []string{secret, open} {
			if err := pub.publish(t, subj, "before"); err != nil {
				t.Fatalf("publish %s: %v", subj, err)
			}
		}
		mustSub(t, c, prefix+".>")
		if err := pub.publish(t, mark, "after"); err != nil {
			t.Fatalf("publish %s: %v", mark, err)
		}
		got := until(t, c, mark)
		if got[secret] {
			t.Errorf("%s: caught up on %s, which its identity may not receive", c.name, secret)
			return
		}
		c.close()
		if got[open] {
			return
		}
	}
	t.Errorf("no SUBSCRIBE caught up on the message published just before it in 20 attempts")
}

// until collects the subjects c receives up to the one on mark.
func until(t *testing.T, c *client, mark string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-c.msgs:
			if m.subj == mark {
				return got
			}
			got[m.subj] = true
		case <-timer.C:
			t.Fatalf("%s: %s was not delivered within %v", c.name, mark, wait)
		}
	}
}
