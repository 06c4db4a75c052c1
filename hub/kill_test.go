package hub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/server"
)

// TestMain runs a busbar instance in a child process when asked
// (BUSBAR_HUB_CHILD names its configuration file), so a test can kill it
// with SIGKILL: server.Start is what the busbar command runs.
func TestMain(m *testing.M) {
	if path := os.Getenv("BUSBAR_HUB_CHILD"); path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		if _, err := server.Start(cfg, server.Options{Logger: log}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		select {}
	}
	os.Exit(m.Run())
}

// child is a busbar instance in its own process.
type child struct {
	cmd  *exec.Cmd
	mqtt string
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func startChild(t *testing.T, name, leafURL string, extra ...string) *child {
	t.Helper()
	mqttPort, natsPort := testpeer.FreePort(t), testpeer.FreePort(t)
	conf := fmt.Sprintf(`server_name: %s
port: %d
http_port: -1
mqtt { port: %d, js_domain: hub }
leafnodes { reconnect: "100ms", remotes [ { urls: [%q] } ] }
`, name, natsPort, mqttPort, leafURL) + strings.Join(extra, "\n")
	path := filepath.Join(t.TempDir(), name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{mqtt: "tcp://" + testpeer.Addr(mqttPort), logs: &lockedBuffer{}}
	c.cmd = exec.Command(exe)
	c.cmd.Env = append(os.Environ(), "BUSBAR_HUB_CHILD="+path)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		c.kill()
		<-done
		if t.Failed() {
			t.Logf("%s log:\n%s", name, c.logs.String())
		}
	})
	// Ready when an MQTT CONNECT is accepted (before the hub state is
	// reachable it is refused with 0x03).
	waitFor(t, 30*time.Second, name+" accepting MQTT", func() error {
		if conn, err := net.Dial("tcp", testpeer.Addr(mqttPort)); err != nil {
			return err
		} else {
			conn.Close()
		}
		o := paho.NewClientOptions().AddBroker(c.mqtt).SetClientID("probe-" + name).SetAutoReconnect(false).SetConnectRetry(false).
			SetUsername("probe").SetPassword("pw")
		pc := paho.NewClient(o)
		tok := pc.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() != nil {
			return tok.Error()
		}
		pc.Disconnect(0)
		return nil
	})
	return c
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// TestKillInstanceLosesNothingAcknowledged: a subscriber's persistent
// session and a QoS 1 publisher on instance a; the subscriber goes offline
// half way (its messages queue in the hub), a is killed with SIGKILL
// mid-stream; the subscriber reconnects to b and gets every message a
// acknowledged to the publisher.
func TestKillInstanceLosesNothingAcknowledged(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL)
	bb := startChild(t, "busbar-b", hubs[1].LeafURL)

	r := &received{got: map[int]int{}}
	onMsg := r.handler
	so := paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("survivor").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(onMsg)
	sub := paho.NewClient(so)
	wait(t, sub.Connect())
	wait(t, sub.Subscribe("load/#", 1, nil))
	// Half the stream reaches the subscriber live, half is queued on a
	// for its offline session.
	half := 150

	po := paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("loader").SetAutoReconnect(false).SetConnectRetry(false)
	pub := paho.NewClient(po)
	wait(t, pub.Connect())
	var acked []int
	killAt := 300
	for i := 0; ; i++ {
		if i == half {
			sub.Disconnect(100)
		}
		if i == killAt {
			a.kill()
		}
		tok := pub.Publish("load/x", 1, false, strconv.Itoa(i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			break // a is gone: this one was not acknowledged
		}
		acked = append(acked, i)
		if i > killAt+1000 {
			t.Fatal("publishes still acknowledged after the instance was killed")
		}
	}
	if len(acked) < killAt {
		t.Fatalf("only %d publishes acknowledged before the kill", len(acked))
	}
	r.mu.Lock()
	before := len(r.got)
	r.mu.Unlock()
	t.Logf("%d publishes acknowledged, %d delivered before the kill", len(acked), before)

	// The session resumes on b with what a acknowledged.
	so2 := paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("survivor").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(onMsg)
	sub2 := paho.NewClient(so2)
	wait(t, sub2.Connect())
	defer sub2.Disconnect(0)
	waitFor(t, 30*time.Second, "every acknowledged message delivered", func() error { return r.missing(acked) })
}

// TestAdoptSessionOfKilledInstance: an offline session held by an
// instance that is killed is adopted by another (heartbeats stop; the
// instance no longer answers), so what is published for it afterwards is
// kept and delivered when its client comes back.
func TestAdoptSessionOfKilledInstance(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	sub := mqttConnect(t, a.mqtt, "orphan", false, nil)
	wait(t, sub.Subscribe("adopt/#", 1, nil))
	sub.Disconnect(100)
	waitHeard(t, bb)
	a.kill()
	waitAdopted(t, bb)
	pub := mqttConnect(t, bb.mqtt, "adopt-pub", true, nil)
	const n = 20
	for i := range n {
		wait(t, pub.Publish("adopt/x", 1, false, strconv.Itoa(i)))
	}
	got := make(chan string, 2*n)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("orphan").SetCleanSession(false).
		SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))
	wait(t, c.Connect())
	defer c.Disconnect(0)
	for i := range n {
		select {
		case g := <-got:
			if g != strconv.Itoa(i) {
				t.Fatalf("message %d: got %q", i, g)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d published after the adoption not delivered", i)
		}
	}
}

// received counts the numbered payloads a subscriber got (repeats allowed:
// QoS 1 is at least once).
type received struct {
	mu  sync.Mutex
	got map[int]int
}

func (r *received) handler(_ paho.Client, m paho.Message) {
	if n, err := strconv.Atoi(string(m.Payload())); err == nil {
		r.mu.Lock()
		r.got[n]++
		r.mu.Unlock()
	}
}

// missing is how many of acked were not received, and the first.
func (r *received) missing(acked []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, first := 0, -1
	for _, i := range acked {
		if r.got[i] == 0 {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d of %d acknowledged messages missing (first %d)", n, len(acked), first)
	}
	return nil
}

// TestKillSubscribersInstanceLosesNothingAcknowledged: the publisher is
// on instance b, the subscribers' persistent sessions on instance a,
// which is killed with SIGKILL mid-stream. b acknowledged each message
// only after the hub logged it, so what a had not stored yet, and what
// was published for a's sessions before another instance took them, is
// replayed from the log: "online" (connected to a until the kill) gets
// every acknowledged message when it reconnects to b at once (b claims
// the session from a gone holder), and "offline" (away since the 100th
// message) when it comes back after b adopted its session.
func TestKillSubscribersInstanceLosesNothingAcknowledged(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	on, off := &received{got: map[int]int{}}, &received{got: map[int]int{}}
	subOn := paho.NewClient(paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("online").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(on.handler))
	wait(t, subOn.Connect())
	wait(t, subOn.Subscribe("cross/#", 1, nil))
	subOff := paho.NewClient(paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("offline").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(off.handler))
	wait(t, subOff.Connect())
	wait(t, subOff.Subscribe("cross/#", 1, nil))

	pub := mqttConnect(t, bb.mqtt, "cross-pub", true, nil)
	waitInterest(t, pub, "cross/probe", 1, on, off)
	waitHeard(t, bb)

	var acked []int
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			wait(t, pub.Publish("cross/x", 1, false, strconv.Itoa(i)))
			acked = append(acked, i)
			if i == 100 {
				subOff.Disconnect(100)
			}
		}
	}
	publish(0, 200)
	a.kill()
	publish(200, 300)
	// online reconnects to b at once: its holder is gone.
	subOn2 := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("online").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(on.handler))
	waitFor(t, 30*time.Second, "online reconnects to b", func() error {
		tok := subOn2.Connect()
		tok.WaitTimeout(10 * time.Second)
		return tok.Error()
	})
	defer subOn2.Disconnect(0)
	publish(300, 400)
	waitAdopted(t, bb)
	publish(400, 450)
	waitFor(t, 30*time.Second, "online has every acknowledged message", func() error { return on.missing(acked) })

	subOff2 := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("offline").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(off.handler))
	wait(t, subOff2.Connect())
	defer subOff2.Disconnect(0)
	waitFor(t, 30*time.Second, "offline has every acknowledged message", func() error { return off.missing(acked) })
	on.mu.Lock()
	off.mu.Lock()
	dupOn, dupOff := 0, 0
	for _, i := range acked {
		dupOn += on.got[i] - 1
		dupOff += off.got[i] - 1
	}
	off.mu.Unlock()
	on.mu.Unlock()
	t.Logf("%d acknowledged; repeated: online %d, offline %d", len(acked), dupOn, dupOff)
}

// TestReplayPassesTheGate: the permission matrix's row for the publish
// log's replay. The subscriber's identity may not receive secret.>; its
// session, subscribed to "#" on instance a, is taken by b after a is
// killed, and the replay of what b's publisher sent meanwhile delivers
// open/z and never secret/z, as a live delivery would.
func TestReplayPassesTheGate(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL, `authorization { users [
  { user: probe, password: pw }
  { user: pub, password: pw }
  { user: sub, password: pw, permissions { subscribe { deny: ["secret.>"] } } }
] }`)
	deny := &auth.Permissions{Subscribe: &auth.SubjectPermission{Deny: []string{"secret.>"}}}
	users := auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		switch {
		case c.User == "pub" && c.Password == "pw":
			return &auth.Identity{Name: "pub"}, true, nil
		case c.User == "sub" && c.Password == "pw":
			return &auth.Identity{Name: "sub", Perms: deny}, true, nil
		}
		return nil, false, nil
	})
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, users)
	got := make(chan string, 100)
	connect := func(url string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("gated").SetUsername("sub").SetPassword("pw").
			SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m.Topic() }))
		wait(t, c.Connect())
		return c
	}
	sub := connect(a.mqtt)
	wait(t, sub.Subscribe("#", 1, nil))
	sub.Disconnect(100)
	waitHeard(t, bb)
	a.kill()
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("gate-pub").SetUsername("pub").SetPassword("pw").
		SetAutoReconnect(false).SetConnectRetry(false))
	wait(t, pub.Connect())
	defer pub.Disconnect(0)
	wait(t, pub.Publish("secret/z", 1, false, "s"))
	wait(t, pub.Publish("open/z", 1, false, "o"))
	// Before b adopts the session (3 s of silence), nothing holds it: the
	// two messages are only in the log, and the claim replays them.
	c := connect(bb.mqtt)
	defer c.Disconnect(0)
	select {
	case g := <-got:
		if g != "open/z" {
			t.Fatalf("replay delivered %q", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("open/z not replayed")
	}
	// A marker published after: whatever the replay sent has arrived by
	// then, and nothing secret among it.
	wait(t, pub.Publish("open/end", 1, false, "e"))
	for g := range got {
		if g == "open/end" {
			break
		}
		if strings.HasPrefix(g, "secret") {
			t.Fatalf("replay delivered %q", g)
		}
	}
}

// waitHeard waits until in has heard another instance's heartbeat (so
// that it can tell when that one goes silent).
func waitHeard(t *testing.T, in *instance) {
	t.Helper()
	waitFor(t, 30*time.Second, "a peer's heartbeat", func() error {
		if in.st.Stats().Peers == 0 {
			return errors.New("no peer yet")
		}
		return nil
	})
}

// waitAdopted waits until in adopted a session of an instance that is gone.
func waitAdopted(t *testing.T, in *instance) {
	t.Helper()
	waitFor(t, 30*time.Second, "an adoption", func() error {
		if st := in.st.Stats(); st.Adopted == 0 {
			return fmt.Errorf("adopted %d", st.Adopted)
		}
		return nil
	})
}

// TestReplayFromTheHubsRecordOfTheHolder: no instance that heard the
// holder is left. Instance a holds "late" and is killed; b, which
// acknowledged messages for it meanwhile (they are only in the log), shuts
// down before adopting it; a fresh instance c, which never heard a, takes
// the session when its client comes back and replays from a's last
// heartbeat as a recorded it in the hub: the messages published after the
// kill arrive, those a delivered well before it do not come again.
func TestReplayFromTheHubsRecordOfTheHolder(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	r := &received{got: map[int]int{}}
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("late").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(r.handler))
	wait(t, sub.Connect())
	wait(t, sub.Subscribe("late/#", 1, nil))
	pub := mqttConnect(t, bb.mqtt, "late-pub", true, nil)
	waitInterest(t, pub, "late/probe", 1, r)
	var early, later []int
	for i := range 10 {
		wait(t, pub.Publish("late/x", 1, false, strconv.Itoa(i)))
		early = append(early, i)
	}
	waitFor(t, 30*time.Second, "the early messages delivered on a", func() error { return r.missing(early) })
	waitHeard(t, bb)
	// a keeps beating (once a second) well past the early messages, so
	// they are older than the replay's start (2 s before the last beat).
	time.Sleep(5 * time.Second)
	a.kill()
	for i := 10; i < 30; i++ {
		wait(t, pub.Publish("late/x", 1, false, strconv.Itoa(i)))
		later = append(later, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bb.b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c := startInstance(t, "c", []string{hubs[2].LeafURL}, nil)
	sub2 := paho.NewClient(paho.NewClientOptions().AddBroker(c.mqtt).SetClientID("late").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(r.handler))
	wait(t, sub2.Connect())
	defer sub2.Disconnect(0)
	waitFor(t, 30*time.Second, "the messages published after the kill", func() error { return r.missing(later) })
	// A marker after the replay: anything repeated has arrived by then.
	pc := mqttConnect(t, c.mqtt, "late-pub2", true, nil)
	wait(t, pc.Publish("late/x", 1, false, "100"))
	waitFor(t, 30*time.Second, "the marker", func() error { return r.missing([]int{100}) })
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range early {
		if r.got[i] > 1 {
			t.Errorf("message %d, delivered 5 s before the kill, came again", i)
		}
	}
}

// TestReplayKeepsQoS2ExactlyOnce: QoS 2 messages the subscriber completed
// on instance a just before a is killed are in the replay's window, and
// are not delivered again when b takes the session (a left a record of
// each completed id); the ones published after the kill arrive.
func TestReplayKeepsQoS2ExactlyOnce(t *testing.T) {
	hubs := jsCluster(t)
	a := startChild(t, "busbar-a", hubs[0].LeafURL)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	r := &received{got: map[int]int{}}
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(a.mqtt).SetClientID("twice").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(r.handler))
	wait(t, sub.Connect())
	wait(t, sub.Subscribe("q2/#", 2, nil))
	pub := mqttConnect(t, bb.mqtt, "q2-pub", true, nil)
	waitInterest(t, pub, "q2/probe", 2, r)
	waitHeard(t, bb)
	var before, after []int
	for i := range 50 {
		wait(t, pub.Publish("q2/x", 2, false, strconv.Itoa(i)))
		before = append(before, i)
	}
	waitFor(t, 30*time.Second, "the first 50 delivered on a", func() error { return r.missing(before) })
	// The handshakes of the last ones finish after their delivery: a
	// marker delivered after them is delivered after those.
	wait(t, pub.Publish("q2/x", 2, false, "1000"))
	waitFor(t, 30*time.Second, "the marker", func() error { return r.missing([]int{1000}) })
	a.kill()
	for i := 50; i < 80; i++ {
		wait(t, pub.Publish("q2/x", 2, false, strconv.Itoa(i)))
		after = append(after, i)
	}
	sub2 := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("twice").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(r.handler))
	wait(t, sub2.Connect())
	defer sub2.Disconnect(0)
	waitFor(t, 30*time.Second, "the messages published after the kill", func() error { return r.missing(after) })
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range before {
		if r.got[i] > 1 {
			t.Errorf("QoS 2 message %d, completed before the kill, delivered %d times", i, r.got[i])
		}
	}
}

// waitInterest publishes probes (payload -1) on topic until every
// receiver got one: the subscriptions' interest has crossed the hub to
// the publisher's instance.
func waitInterest(t *testing.T, pub paho.Client, topic string, qos byte, rs ...*received) {
	t.Helper()
	waitFor(t, 30*time.Second, "a probe on "+topic+" delivered across the hub", func() error {
		wait(t, pub.Publish(topic, qos, false, "-1"))
		time.Sleep(50 * time.Millisecond) // a pause between probes, not the condition
		for _, r := range rs {
			if err := r.missing([]int{-1}); err != nil {
				return err
			}
		}
		return nil
	})
}
