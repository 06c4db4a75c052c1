package matrix

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// mustSub subscribes c to filter and fails when the broker refuses it.
func mustSub(t *testing.T, c *client, filter string) {
	t.Helper()
	if !c.subscribe(t, filter) {
		t.Fatalf("%s: SUBSCRIBE %s refused, want granted", c.name, filter)
	}
}

// mustRefuse subscribes c to filter and fails unless the broker refuses
// it: an MQTT SUBACK failure code, an in-process error, NATS's -ERR
// 'Permissions Violation for Subscription to "filter"'.
func mustRefuse(t *testing.T, c *client, filter string) {
	t.Helper()
	if !c.subscribe(t, filter) {
		return
	}
	if c.nc == nil {
		t.Errorf("%s: SUBSCRIBE %s granted, want refused", c.name, filter)
		return
	}
	want := strings.ToLower(fmt.Sprintf("permissions violation for subscription to %q", filter))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case err := <-c.errs:
			if strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
		case <-timer.C:
			t.Errorf("%s: SUB %s: no -ERR 'Permissions Violation for Subscription' within %v, want refused", c.name, filter, wait)
			return
		}
	}
}

// expect waits until c has received every subject of want, and fails
// for every subject of forbid that arrived meanwhile. The callers publish
// each forbidden message (routed: flushed, acknowledged or returned)
// before the allowed ones, and a connection's deliveries are ordered, so
// a forbidden message the broker let through is in before the last
// allowed one. Other subjects (probes, other traffic) are ignored.
func expect(t *testing.T, c *client, want, forbid []string) {
	t.Helper()
	need := make(map[string]bool, len(want))
	for _, w := range want {
		need[w] = true
	}
	var leaked []string
	timer := time.NewTimer(wait)
	defer timer.Stop()
	lost := c.lost
	for len(need) > 0 {
		select {
		case m := <-c.msgs:
			if slices.Contains(forbid, m.subj) {
				leaked = append(leaked, m.subj)
			}
			delete(need, m.subj)
		case <-lost:
			lost = nil // drain what arrived before the end, then report
			for len(c.msgs) > 0 {
				m := <-c.msgs
				if slices.Contains(forbid, m.subj) {
					leaked = append(leaked, m.subj)
				}
				delete(need, m.subj)
			}
			if len(need) > 0 {
				t.Errorf("%s: connection lost (%v) before the allowed %v arrived", c.name, c.lostErr.Load(), keys(need))
				reportLeaks(t, c, leaked)
				return
			}
		case <-timer.C:
			t.Errorf("%s: allowed %v never arrived (%v)", c.name, keys(need), wait)
			reportLeaks(t, c, leaked)
			return
		}
	}
	reportLeaks(t, c, leaked)
}

func reportLeaks(t *testing.T, c *client, leaked []string) {
	t.Helper()
	if len(leaked) > 0 {
		t.Errorf("%s: forbidden %v delivered", c.name, leaked)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// replay subscribes MQTT client c to filter and returns the subjects the
// broker replays for it (retained messages). The end of the replay is a
// retained marker c sets on a topic of its own and subscribes to after
// filter: the broker replays each SUBSCRIBE in turn, on one connection.
func replay(t *testing.T, c *client, filter string) map[string]bool {
	t.Helper()
	mark := "mark." + uniqueID("r") + ".end"
	if err := c.retain(t, mark, "marker"); err != nil {
		t.Fatalf("%s: retained marker %s refused: %v", c.name, mark, err)
	}
	mustSub(t, c, filter)
	mustSub(t, c, mark)
	return until(t, c, mark)
}

// expectReplay checks what a SUBSCRIBE to filter replays: every subject
// of want, none of forbid.
func expectReplay(t *testing.T, c *client, filter string, want, forbid []string) {
	t.Helper()
	got := replay(t, c, filter)
	var missing, leaked []string
	for _, w := range want {
		if !got[w] {
			missing = append(missing, w)
		}
	}
	for _, f := range forbid {
		if got[f] {
			leaked = append(leaked, f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: SUBSCRIBE %s did not replay the retained %v", c.name, filter, missing)
	}
	if len(leaked) > 0 {
		t.Errorf("%s: SUBSCRIBE %s replayed the forbidden retained %v", c.name, filter, leaked)
	}
}

// expectKept fails when the broker ended any of the connections.
func expectKept(t *testing.T, cs ...*client) {
	t.Helper()
	for _, c := range cs {
		select {
		case <-c.lost:
			t.Errorf("%s: disconnected (%v), want kept", c.name, c.lostErr.Load())
		default:
		}
	}
}

// expectLost waits until the broker ends c's connection.
func expectLost(t *testing.T, c *client, why string) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(wait):
		t.Errorf("%s: still connected after %v, want closed: %s", c.name, wait, why)
	}
}

// observe connects user over each transport, subscribed to filter.
func observe(t *testing.T, s *server, over []tp, user, filter string) []*client {
	t.Helper()
	cs := make([]*client, len(over))
	for i, x := range over {
		cs[i] = dial(t, s, x, user)
		mustSub(t, cs[i], filter)
	}
	return cs
}

// dialAll connects user over each transport.
func dialAll(t *testing.T, s *server, over []tp, user string) []*client {
	t.Helper()
	cs := make([]*client, len(over))
	for i, x := range over {
		cs[i] = dial(t, s, x, user)
	}
	return cs
}

// publishAll publishes subject prefix.class.TRANSPORT from each client
// and returns the subjects. An allowed message the broker refuses fails
// the test; a forbidden one may be refused or not.
func publishAll(t *testing.T, cs []*client, prefix, class string, allowed bool) []string {
	t.Helper()
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = prefix + "." + class + "." + string(c.tp)
		if err := c.publish(t, out[i], class); err != nil && allowed {
			t.Fatalf("%s: publish %s refused: %v", c.name, out[i], err)
		}
	}
	return out
}

// mustPublish publishes an allowed message.
func mustPublish(t *testing.T, c *client, subj string) {
	t.Helper()
	if err := c.publish(t, subj, "allowed"); err != nil {
		t.Fatalf("%s: publish %s refused: %v", c.name, subj, err)
	}
}
