package matrix

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
)

// pubCheck: user publishes over x a subject outside its allow list
// (nopub) and one in its deny list (open.deny), then an allowed one;
// subscribers of user all over each of over get the allowed one only.
func pubCheck(t *testing.T, s *server, x tp, user string, over []tp, prefix string) {
	obs := observe(t, s, over, "all", prefix+".>")
	p := dial(t, s, x, user)
	forbid := []string{prefix + ".nopub.1", prefix + ".open.deny"}
	for _, f := range forbid {
		err := p.publish(t, f, "forbidden")
		if err == nil && (x == mqtt5 || x == inproc) {
			t.Errorf("%s: publish %s accepted, want refused (MQTT 5 PUBACK 0x87, in-process ErrPermPublish)", p.name, f)
		}
	}
	mustPublish(t, p, prefix+".open.1")
	for _, o := range obs {
		expect(t, o, []string{prefix + ".open.1"}, forbid)
	}
}

// subCheck: user subscribes over x; a subscription to a denied subject is
// refused, and a wildcard over it is granted with the denied subjects
// filtered out. Publishers of user all over each of over send denied
// subjects, then allowed ones.
func subCheck(t *testing.T, s *server, x tp, user string, over []tp, prefix string) {
	c := dial(t, s, x, user)
	mustRefuse(t, c, prefix+".secret.lit")
	mustSub(t, c, prefix+".>")
	pubs := dialAll(t, s, over, "all")
	forbid := []string{prefix + ".secret.lit"}
	for _, p := range pubs {
		mustPublish(t, p, prefix+".secret.lit")
	}
	forbid = append(forbid, publishAll(t, pubs, prefix, "secret", true)...)
	want := publishAll(t, pubs, prefix, "open", true)
	expect(t, c, want, forbid)
}

// accountCheck: user (of account B) subscribes over x to a wildcard;
// account A's and the global account's messages on it never arrive,
// account B's do.
func accountCheck(t *testing.T, s *server, x tp, user string, over []tp, prefix string) {
	c := dial(t, s, x, user)
	mustSub(t, c, prefix+".>")
	forbid := publishAll(t, dialAll(t, s, over, "a"), prefix, "iso", true)
	forbid = append(forbid, publishAll(t, dialAll(t, s, over, "all"), prefix, "glob", true)...)
	want := publishAll(t, dialAll(t, s, over, "b"), prefix, "open", true)
	expect(t, c, want, forbid)
}

// Row live: the client under test over x; its counterparts over every
// transport.

func livePub(t *testing.T, e *env, x tp, prefix string) {
	pubCheck(t, e.s, x, "pub", transports, prefix)
}

func liveSub(t *testing.T, e *env, x tp, prefix string) {
	subCheck(t, e.s, x, "sub", transports, prefix)
}

func liveAccount(t *testing.T, e *env, x tp, prefix string) {
	accountCheck(t, e.s, x, "b", transports, prefix)
}

// Row inproc: the client under test is in-process (LocalAs the user's
// identity, or Local without one); the column is its counterpart.

func inprocPub(t *testing.T, e *env, x tp, prefix string) {
	pubCheck(t, e.s, inproc, "pub", []tp{x}, prefix)
}

func inprocSub(t *testing.T, e *env, x tp, prefix string) {
	subCheck(t, e.s, inproc, "sub", []tp{x}, prefix)
}

func inprocAccount(t *testing.T, e *env, x tp, prefix string) {
	accountCheck(t, e.s, inproc, "b", []tp{x}, prefix)
}

// inprocAnon: broker.Local without an identity is a client of the global
// account with every permission: it gets the global account's messages
// and not the accounts', and what it publishes stays in the global
// account.
func inprocAnon(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	anon := dial(t, s, inproc, "")
	mustSub(t, anon, prefix+".in.>")
	forbid := []string{prefix + ".in.a", prefix + ".in.b"}
	mustPublish(t, dial(t, s, x, "a"), forbid[0])
	mustPublish(t, dial(t, s, x, "b"), forbid[1])
	mustPublish(t, dial(t, s, x, "all"), prefix+".in.all")
	expect(t, anon, []string{prefix + ".in.all"}, forbid)

	global := dial(t, s, x, "all")
	mustSub(t, global, prefix+".out.>")
	inA := dial(t, s, x, "a")
	mustSub(t, inA, prefix+".out.>")
	mustPublish(t, anon, prefix+".out.anon")
	expect(t, global, []string{prefix + ".out.anon"}, nil)
	mustPublish(t, inA, prefix+".out.a") // A's own, after anon's was routed
	expect(t, inA, []string{prefix + ".out.a"}, []string{prefix + ".out.anon"})
}

// Row import: account A exports the stream *.*.shared.> and the service
// *.*.svc.>; account B imports both.

// importStream: B's subscriber over x gets A's messages on the exported
// stream from every transport, and none of A's other subjects.
func importStream(t *testing.T, e *env, x tp, prefix string) {
	c := dial(t, e.s, x, "b")
	mustSub(t, c, prefix+".>")
	as := dialAll(t, e.s, transports, "a")
	forbid := publishAll(t, as, prefix, "iso", true)
	want := publishAll(t, as, prefix, "shared", true)
	expect(t, c, want, forbid)
}

// importSub: the importing subscriber's own deny list applies to what
// arrives through the import.
func importSub(t *testing.T, e *env, x tp, prefix string) {
	c := dial(t, e.s, x, "bsub")
	hidden := prefix + ".shared.hidden"
	mustRefuse(t, c, hidden)
	mustSub(t, c, prefix+".>")
	as := dialAll(t, e.s, transports, "a")
	for _, a := range as {
		mustPublish(t, a, hidden)
	}
	want := publishAll(t, as, prefix, "shared", true)
	expect(t, c, want, []string{hidden})
}

// importService: what B publishes over x reaches A through the service
// import only: not on a subject B does not import, and not back along
// A's stream export.
func importService(t *testing.T, e *env, x tp, prefix string) {
	obs := observe(t, e.s, transports, "a", prefix+".>")
	r := dial(t, e.s, x, "b")
	forbid := []string{prefix + ".nosvc.q", prefix + ".shared.rev"}
	for _, f := range forbid {
		mustPublish(t, r, f)
	}
	mustPublish(t, r, prefix+".svc.q")
	for _, o := range obs {
		expect(t, o, []string{prefix + ".svc.q"}, forbid)
	}
}

// importReply: a request from B over x is answered by A's responder
// through the service import; a request on a subject B does not import
// finds no responder, and never reaches A.
func importReply(t *testing.T, e *env, x tp, prefix string) {
	resp := dial(t, e.s, inproc, "a")
	seen := make(chan string, 16)
	_, err := resp.loc.Subscribe(prefix+".>", func(m *broker.Message) {
		seen <- string(m.Subject)
		if len(m.Reply) > 0 {
			_ = resp.loc.Publish(string(m.Reply), []byte("pong"))
		}
	})
	if err != nil {
		t.Fatalf("responder: %v", err)
	}
	r := dial(t, e.s, x, "b")
	if _, err := r.request(t, prefix+".nosvc.req"); !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, broker.ErrNoResponders) {
		t.Errorf("%s: request on a subject B does not import: %v, want no responders", r.name, err)
	}
	data, err := r.request(t, prefix+".svc.req")
	if err != nil || data != "pong" {
		t.Fatalf("%s: request through the service import: %q, %v; want \"pong\"", r.name, data, err)
	}
	for len(seen) > 0 {
		if s := <-seen; s == prefix+".nosvc.req" {
			t.Errorf("A's responder got B's request on %s, which B does not import", s)
		}
	}
}

// request sends a request (NATS or in-process) and returns the reply.
func (c *client) request(t *testing.T, subj string) (string, error) {
	t.Helper()
	switch {
	case c.nc != nil:
		m, err := c.nc.Request(subj, []byte("ping"), wait)
		if err != nil {
			return "", err
		}
		return string(m.Data), nil
	case c.loc != nil:
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		m, err := c.loc.Request(ctx, subj, []byte("ping"))
		if err != nil {
			return "", err
		}
		return string(m.Payload), nil
	}
	t.Fatalf("%s: requests are NATS's and in-process", c.name)
	return "", nil
}
