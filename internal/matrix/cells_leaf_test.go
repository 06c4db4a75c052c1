package matrix

import (
	"testing"
	"time"

	"github.com/busbar/busbar/internal/natsserver"
)

// Row leaf: a busbar broker joined as a leaf node to a real nats-server
// 2.15.2 hub, its link bound to account A with deny_imports *.*.noimp.>
// and deny_exports *.*.noexp.>. The column is the transport of the busbar
// client; the hub's clients are nats.go on its client port.

func leafBroker(t *testing.T) *env {
	hub := natsserver.Start(t, natsserver.Binary(t, "2.15.2"), natsserver.Config{})
	return &env{s: startServer(t, confText(confOpts{leafURL: hub.LeafURL})), hub: hub}
}

// hubClient connects nats.go to the hub.
func hubClient(t *testing.T, e *env) *client {
	t.Helper()
	c := &client{name: "hub", tp: natsTCP, msgs: make(chan msg, 4096), errs: make(chan error, 64),
		lost: make(chan struct{}), done: make(chan struct{})}
	if err := c.dialNATS(e.hub.ClientURL, ""); err != nil {
		t.Fatalf("connect to the hub: %v", err)
	}
	t.Cleanup(c.close)
	return c
}

// crossed publishes subj from pub until sub receives it: the interest of
// sub has crossed the link (a condition polled by publishing again, since
// interest travels asynchronously).
func crossed(t *testing.T, pub, sub *client, subj string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		mustPublish(t, pub, subj)
		poll := time.NewTimer(100 * time.Millisecond)
		for waiting := true; waiting; {
			select {
			case m := <-sub.msgs:
				if m.subj == subj {
					poll.Stop()
					return
				}
			case <-poll.C:
				waiting = false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never received %s from %s across the leaf link within %v", sub.name, subj, pub.name, wait)
		}
	}
}

// leafIn: messages from the hub obey the leaf's deny_imports.
func leafIn(t *testing.T, e *env, x tp, prefix string) {
	c := dial(t, e.s, x, "a")
	mustSub(t, c, prefix+".>")
	h := hubClient(t, e)
	crossed(t, h, c, prefix+".open.probe")
	mustPublish(t, h, prefix+".noimp.1")
	mustPublish(t, h, prefix+".open.1")
	expect(t, c, []string{prefix + ".open.1"}, []string{prefix + ".noimp.1"})
}

// leafOut: local messages to the hub obey deny_exports.
func leafOut(t *testing.T, e *env, x tp, prefix string) {
	p := dial(t, e.s, x, "a")
	h := hubClient(t, e)
	mustSub(t, h, prefix+".>")
	crossed(t, p, h, prefix+".open.probe")
	mustPublish(t, p, prefix+".noexp.1")
	mustPublish(t, p, prefix+".open.1")
	expect(t, h, []string{prefix + ".open.1"}, []string{prefix + ".noexp.1"})
}

// leafPub: what a local user may not publish does not reach the hub.
func leafPub(t *testing.T, e *env, x tp, prefix string) {
	p := dial(t, e.s, x, "apub")
	h := hubClient(t, e)
	mustSub(t, h, prefix+".>")
	crossed(t, p, h, prefix+".open.probe")
	forbid := []string{prefix + ".nopub.1", prefix + ".open.deny"}
	for _, f := range forbid {
		_ = p.publish(t, f, "forbidden")
	}
	mustPublish(t, p, prefix+".open.1")
	expect(t, h, []string{prefix + ".open.1"}, forbid)
}

// leafSub: local subscribers' permissions apply to messages from the hub.
func leafSub(t *testing.T, e *env, x tp, prefix string) {
	c := dial(t, e.s, x, "asub")
	mustRefuse(t, c, prefix+".secret.lit")
	mustSub(t, c, prefix+".>")
	h := hubClient(t, e)
	crossed(t, h, c, prefix+".open.probe")
	mustPublish(t, h, prefix+".secret.lit")
	mustPublish(t, h, prefix+".secret.1")
	mustPublish(t, h, prefix+".open.1")
	expect(t, c, []string{prefix + ".open.1"}, []string{prefix + ".secret.lit", prefix + ".secret.1"})
}

// leafAccount: the hub's messages enter account A, the link's account:
// account B gets only what A exports to it.
func leafAccount(t *testing.T, e *env, x tp, prefix string) {
	c := dial(t, e.s, x, "b")
	mustSub(t, c, prefix+".>")
	h := hubClient(t, e)
	crossed(t, h, c, prefix+".shared.probe")
	mustPublish(t, h, prefix+".iso.1")
	mustPublish(t, h, prefix+".shared.1")
	expect(t, c, []string{prefix + ".shared.1"}, []string{prefix + ".iso.1"})
}
