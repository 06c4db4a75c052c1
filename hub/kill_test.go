package hub_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

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

func startChild(t *testing.T, name, leafURL string) *child {
	t.Helper()
	mqttPort, natsPort := testpeer.FreePort(t), testpeer.FreePort(t)
	conf := fmt.Sprintf(`server_name: %s
port: %d
http_port: -1
mqtt { port: %d, js_domain: hub }
leafnodes { reconnect: "100ms", remotes [ { urls: [%q] } ] }
`, name, natsPort, mqttPort, leafURL)
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
		o := paho.NewClientOptions().AddBroker(c.mqtt).SetClientID("probe-" + name).SetAutoReconnect(false).SetConnectRetry(false)
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

	var mu sync.Mutex
	got := map[int]bool{}
	onMsg := func(_ paho.Client, m paho.Message) {
		n, err := strconv.Atoi(string(m.Payload()))
		if err == nil {
			mu.Lock()
			got[n] = true
			mu.Unlock()
		}
	}
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
	mu.Lock()
	before := len(got)
	mu.Unlock()
	t.Logf("%d publishes acknowledged, %d delivered before the kill", len(acked), before)

	// The session resumes on b with what a acknowledged.
	so2 := paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("survivor").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(onMsg)
	sub2 := paho.NewClient(so2)
	wait(t, sub2.Connect())
	defer sub2.Disconnect(0)
	waitFor(t, 30*time.Second, "every acknowledged message delivered", func() error {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		first := -1
		for _, n := range acked {
			if !got[n] {
				if first < 0 {
					first = n
				}
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d acknowledged messages missing (first %d)", missing, len(acked), first)
		}
		return nil
	})
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
	waitFor(t, 30*time.Second, "b hears a's heartbeat", func() error {
		if bb.st.Stats().Peers == 0 {
			return errors.New("no peer yet")
		}
		return nil
	})
	a.kill()
	waitFor(t, 30*time.Second, "b adopts the session", func() error {
		if st := bb.st.Stats(); st.Adopted == 0 {
			return fmt.Errorf("adopted %d", st.Adopted)
		}
		return nil
	})
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
