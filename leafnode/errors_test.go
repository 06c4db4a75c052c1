package leafnode_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/natsproto"
)

// logCapture collects a broker's log lines as JSON (every level).
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *logCapture) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// lines are the captured lines whose message starts with msg.
func (c *logCapture) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(c.text()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		if s, _ := m["msg"].(string); strings.HasPrefix(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

func lineTime(t *testing.T, m map[string]any) time.Time {
	t.Helper()
	s, _ := m["time"].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log time %q: %v", s, err)
	}
	return ts
}

// capturedLeaf is a busbar instance with a NATS listener whose log is
// captured; its leaf service is added with addLeaf.
type capturedLeaf struct {
	b    *broker.Broker
	nats string
	log  *logCapture
	svc  *leafnode.Service
}

func startCaptured(t *testing.T, name string) *capturedLeaf {
	t.Helper()
	lc := &logCapture{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("busbar %s log:\n%s", name, lc.text())
		}
	})
	b, err := broker.New(broker.Options{ServerName: name, Logger: lc.logger()})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := natsproto.New(natsproto.Options{Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := nt.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(nt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	return &capturedLeaf{b: b, nats: "nats://" + nt.Addr().String(), log: lc}
}

func (l *capturedLeaf) addLeaf(t *testing.T, o leafnode.Options) {
	t.Helper()
	svc, err := leafnode.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.b.Start(svc); err != nil {
		t.Fatal(err)
	}
	l.svc = svc
}

func (l *capturedLeaf) stats() leafnode.RemoteStats { return l.svc.Stats()[0] }

func (l *capturedLeaf) waitUp(t *testing.T) {
	t.Helper()
	eventually(t, "leaf link up", func() error {
		if st := l.stats(); !st.Up {
			return fmt.Errorf("not up: %+v", st)
		}
		return nil
	})
}

// TestLeafDuplicateName: two busbar leaves configured with one
// server_name. The hub keeps the newer connection and evicts the older
// with -ERR 'Duplicate Remote LeafNode Connection' (both versions); the
// evicted leaf says why and waits ErrorDelay before reconnecting, so the
// two take turns instead of evicting each other in a hot loop.
func TestLeafDuplicateName(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{})
		const delay = time.Second
		opts := leafnode.Options{Remotes: []leafnode.Remote{{URLs: []string{hub.LeafURL}}}, Reconnect: 100 * time.Millisecond, ErrorDelay: delay}
		a := startCaptured(t, "dup")
		a.addLeaf(t, opts)
		a.waitUp(t)
		b := startCaptured(t, "dup")
		b.addLeaf(t, opts)
		const evicted = "leafnode: the hub replaced this link by another leaf with the same name"
		eventually(t, "an eviction logged by one leaf", func() error {
			if len(a.log.lines(t, evicted))+len(b.log.lines(t, evicted)) == 0 {
				return fmt.Errorf("no eviction yet")
			}
			return nil
		})
		// Without the delay the leaves would replace each other as fast
		// as they connect; with it, at most one eviction per delay.
		start := a.stats().Reconnects + b.stats().Reconnects
		const window = 3 * time.Second
		time.Sleep(window)
		n := a.stats().Reconnects + b.stats().Reconnects - start
		if max := int64(window/delay) + 2; n > max {
			t.Fatalf("%d reconnects in %v: the leaves evict each other in a loop (want at most %d)", n, window, max)
		}
		for _, l := range []*capturedLeaf{a, b} {
			for _, m := range l.log.lines(t, evicted) {
				if m["name"] != "dup" || !strings.Contains(fmt.Sprint(m["err"]), "Duplicate Remote LeafNode Connection") {
					t.Fatalf("eviction line without the name or the hub's error: %v", m)
				}
			}
		}
		// Never both at once at the hub.
		if z := hub.Leafz(t); len(z.Leafs) > 1 {
			t.Fatalf("the hub holds %d leaves named dup", len(z.Leafs))
		}
	})
}

// TestLeafBadCredentials: the hub's leafnode port wants a password and
// the remote has the wrong one. The hub answers -ERR 'Authorization
// Violation'; busbar logs it once with a hint (the broker's limiter),
// never the password, and retries every Reconnect, not in a hot loop.
// The right password is accepted.
func TestLeafBadCredentials(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{Leaf: `  authorization { user: leaf, password: "right-pw" }`})
		const reconnect = 300 * time.Millisecond
		const secret = "wrong-secret-pw"
		bad := startCaptured(t, "leafBad")
		bad.addLeaf(t, leafnode.Options{Reconnect: reconnect, Remotes: []leafnode.Remote{{
			URLs: []string{hub.LeafURL}, User: "leaf", Password: secret}}})
		good := startCaptured(t, "leafGood")
		good.addLeaf(t, leafnode.Options{Reconnect: reconnect, Remotes: []leafnode.Remote{{
			URLs: []string{hub.LeafURL}, User: "leaf", Password: "right-pw"}}})
		good.waitUp(t)

		const attempt = "leafnode: could not connect"
		eventually(t, "three failed attempts", func() error {
			if n := len(bad.log.lines(t, attempt)); n < 3 {
				return fmt.Errorf("%d attempts", n)
			}
			return nil
		})
		const window = 2 * time.Second
		before := len(bad.log.lines(t, attempt))
		time.Sleep(window)
		attempts := bad.log.lines(t, attempt)
		if n, max := len(attempts)-before, int(window/reconnect)+1; n < 1 || n > max {
			t.Fatalf("%d attempts in %v, want 1..%d (one per reconnect interval)", n, window, max)
		}
		for i := 1; i < len(attempts); i++ {
			if gap := lineTime(t, attempts[i]).Sub(lineTime(t, attempts[i-1])); gap < reconnect {
				t.Fatalf("attempts %d and %d only %v apart (reconnect %v)", i-1, i, gap, reconnect)
			}
			if attempts[i]["level"] != "DEBUG" || !strings.Contains(fmt.Sprint(attempts[i]["err"]), "Authorization Violation") {
				t.Fatalf("attempt line: %v", attempts[i])
			}
		}
		refused := bad.log.lines(t, "leafnode: the hub refused the credentials")
		if len(refused) != 1 || refused[0]["level"] != "ERROR" || !strings.Contains(fmt.Sprint(refused[0]["err"]), "Authorization Violation") {
			t.Fatalf("want the refusal logged once at ERROR (rate-limited), got %v", refused)
		}
		if st := bad.stats(); st.Up || !strings.Contains(st.LastError, "Authorization Violation") {
			t.Fatalf("bad link: %+v", st)
		}
		if strings.Contains(bad.log.text(), secret) {
			t.Fatal("the password reached the log")
		}
		// (2.9.10's /leafz leaves the name empty.)
		if z := hub.Leafz(t); len(z.Leafs) != 1 || (z.Leafs[0].Name != "" && z.Leafs[0].Name != "leafGood") {
			t.Fatalf("hub leaves: %+v", z.Leafs)
		}
	})
}

// TestLeafForbiddenSubscription: the hub's user for the leaf may not
// subscribe to forbidden.>, and the leaf has local interest there, from
// before the link came up and after. A hub closes a leaf link over one
// forbidden LS+; busbar learns the permissions from the hub's INFO after
// CONNECT, sends only what they allow, and the link stays up with the
// allowed traffic flowing.
func TestLeafForbiddenSubscription(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		hub := natsserver.Start(t, bin, natsserver.Config{Top: `
authorization { users [
  {user: leafu, password: pw, permissions: {subscribe: {deny: "forbidden.>"}}}
  {user: app, password: pw}
] }
`})
		l := startCaptured(t, "leafPerm")
		cl := connect(t, l.nats)
		early, _ := cl.SubscribeSync("forbidden.early")
		allowed, _ := cl.SubscribeSync("allowed.x")
		cl.Flush()
		l.addLeaf(t, leafnode.Options{Reconnect: 100 * time.Millisecond, Remotes: []leafnode.Remote{{
			URLs: []string{hub.LeafURL}, User: "leafu", Password: "pw"}}})
		l.waitUp(t)
		late, _ := cl.SubscribeSync("forbidden.late")
		cl.Flush()

		ch := connect(t, strings.Replace(hub.ClientURL, "nats://", "nats://app:pw@", 1))
		published(t, ch, allowed, "allowed.x")
		for i := range 50 {
			ch.Publish("allowed.x", []byte(fmt.Sprint(i)))
			ch.Publish("forbidden.early", []byte("no"))
			ch.Publish("forbidden.late", []byte("no"))
		}
		ch.Flush()
		for i := range 50 {
			if m, err := allowed.NextMsg(5 * time.Second); err != nil || string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("allowed message %d: %v %v", i, err, m)
			}
		}
		for _, s := range []*nats.Subscription{early, late} {
			if m, err := s.NextMsg(100 * time.Millisecond); err == nil {
				t.Fatalf("forbidden subject %s crossed", m.Subject)
			}
		}
		subs := hubLeafSubs(t, hub)
		if !subs["allowed.x"] || subs["forbidden.early"] || subs["forbidden.late"] {
			t.Fatalf("the hub holds %v for the leaf", subs)
		}
		if st := l.stats(); !st.Up || st.Reconnects != 0 || st.LastError != "" {
			t.Fatalf("the link did not stay up: %+v", st)
		}
		if strings.Contains(l.log.text(), "Permissions Violation") {
			t.Fatal("the hub reported a permissions violation")
		}
	})
}

// hubLeafSubs lists the subscriptions the hub holds for its leaves
// (/leafz?subs=1).
func hubLeafSubs(t *testing.T, hub *natsserver.Hub) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + testpeer.Addr(hub.HTTP) + "/leafz?subs=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var z struct {
		Leafs []struct {
			Subs []string `json:"subscriptions_list"`
		} `json:"leafs"`
	}
	if err := json.Unmarshal(body, &z); err != nil {
		t.Fatalf("/leafz: %v: %s", err, body)
	}
	out := map[string]bool{}
	for _, l := range z.Leafs {
		for _, s := range l.Subs {
			out[s] = true
		}
	}
	return out
}

// TestLeafMinVersionRefused: a hub with leafnodes { min_version } above
// busbar's refuses the link with -ERR 'connection rejected since minimum
// version required is "..."'; busbar logs why, with a hint, and waits
// (nats-server's 5 s, ErrorDelay when shorter) before the next attempt.
func TestLeafMinVersionRefused(t *testing.T) {
	bin := natsserver.Binary(t, "2.15.2")
	hub := natsserver.Start(t, bin, natsserver.Config{Leaf: `  min_version: "99.0.0"`})
	l := startCaptured(t, "old")
	l.addLeaf(t, leafnode.Options{Remotes: []leafnode.Remote{{URLs: []string{hub.LeafURL}}}, Reconnect: 100 * time.Millisecond,
		ErrorDelay: 2 * time.Second})
	const refused = "leafnode: the hub requires a newer leaf node version"
	eventually(t, "the refusal logged with its hint", func() error {
		for _, m := range l.log.lines(t, refused) {
			if strings.Contains(fmt.Sprint(m["err"]), `minimum version required is "99.0.0"`) {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	if st := l.stats(); st.Up {
		t.Fatalf("link up against a hub that refuses its version: %+v", st)
	}
}
