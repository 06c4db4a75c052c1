package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
)

func writeConf(t *testing.T, path, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
}

func TestCheckFlag(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	writeConf(t, good, "port: 4999\ncluster { port: 6222 }\nwebsocket { port: 8080, no_tls: true }\n")
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"-t", "-c", good}, &out, &errb, nil))
	require.Contains(t, out.String(), "is valid")
	require.Contains(t, errb.String(), good+":2:1: warning: \"cluster\"")

	bad := filepath.Join(dir, "bad.conf")
	writeConf(t, bad, "port: 4999\nprot: 1\nwebsocket {\n  port: 8080\n}\nmqtt { max_ack_pending: 70000 }\n")
	out.Reset()
	errb.Reset()
	require.Equal(t, 1, run([]string{"-t", "-c", bad}, &out, &errb, nil))
	require.Equal(t, bad+":2:1: unknown key \"prot\"\n"+
		bad+":3:11: websocket: tls {} is required (or set no_tls: true)\n"+
		bad+":6:25: max_ack_pending: 70000 is out of range (0..65535)\n", errb.String())

	syntax := filepath.Join(dir, "syntax.conf")
	writeConf(t, syntax, "authorization {\n  users = [\n")
	errb.Reset()
	require.Equal(t, 1, run([]string{"-t", "-c", syntax}, &out, &errb, nil))
	require.Equal(t, syntax+":2:11: '[' is never closed\n", errb.String())

	// -t loads the certificates the file names.
	tlsConf := filepath.Join(dir, "tls.conf")
	writeConf(t, tlsConf, "tls {\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n}\n")
	errb.Reset()
	require.Equal(t, 1, run([]string{"-t", "-c", tlsConf}, &out, &errb, nil))
	require.Contains(t, errb.String(), tlsConf+":1:1: transport: invalid TLS configuration")

	errb.Reset()
	require.Equal(t, 2, run([]string{"-t"}, &out, &errb, nil))
	require.Contains(t, errb.String(), "-c FILE")
}

// startWithConfig runs busbar -c path (plus args) and waits until ready.
func startWithConfig(t *testing.T, path string, args ...string) (stop chan os.Signal, logs *syncBuffer, done chan int) {
	t.Helper()
	stop = make(chan os.Signal, 1)
	logs = &syncBuffer{}
	done = make(chan int, 1)
	go func() { done <- run(append([]string{"-c", path}, args...), logs, logs, stop) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "busbar ready") || len(done) > 0 }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, done, "busbar stopped: %s", logs.String())
	t.Cleanup(func() {
		select {
		case stop <- syscall.SIGTERM:
		default:
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("busbar did not stop")
		}
	})
	return stop, logs, done
}

func TestFlagsOverrideFile(t *testing.T) {
	filePort, flagPort := testpeer.FreePort(t), testpeer.FreePort(t)
	path := filepath.Join(t.TempDir(), "f.conf")
	writeConf(t, path, fmt.Sprintf("listen: 127.0.0.1:%d\nauthorization { user: fileuser, password: filepw }\nlogtime: false\n", filePort))
	_, logs, _ := startWithConfig(t, path, "-p", strconv.Itoa(flagPort), "--user", "flaguser", "--pass", "flagpw")
	url := fmt.Sprintf("nats://127.0.0.1:%d", flagPort)
	nc, err := nats.Connect(url, nats.UserInfo("flaguser", "flagpw"))
	require.NoError(t, err)
	nc.Close()
	_, err = nats.Connect(url, nats.UserInfo("fileuser", "filepw"))
	require.Error(t, err)
	require.Contains(t, logs.String(), "nats=127.0.0.1:"+strconv.Itoa(flagPort))
	require.NotContains(t, logs.String(), "time=", "logtime: false drops the time")
}

// asyncErrs collects a connection's asynchronous -ERR texts.
type asyncErrs struct {
	mu   sync.Mutex
	errs []string
}

func (a *asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err.Error())
	a.mu.Unlock()
}

func (a *asyncErrs) has(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestReload: SIGHUP re-reads the file. A removed user's connection is
// closed, a changed user gets the new permissions (and loses a
// subscription they forbid), limits and the log level change, and a bad
// file keeps the running configuration with each error logged at its
// position.
func TestReload(t *testing.T) {
	port := testpeer.FreePort(t)
	path := filepath.Join(t.TempDir(), "r.conf")
	listen := fmt.Sprintf("listen: 127.0.0.1:%d\n", port)
	writeConf(t, path, listen+`
authorization {
  users [
    {user: alice, password: a1}
    {user: bob, password: b1}
  ]
}
max_subscriptions: 100
`)
	stop, logs, _ := startWithConfig(t, path)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	var aliceErrs asyncErrs
	alice, err := nats.Connect(url, nats.UserInfo("alice", "a1"), nats.NoReconnect(), nats.ErrorHandler(aliceErrs.handler))
	require.NoError(t, err)
	defer alice.Close()
	bobClosed := make(chan struct{})
	var bobErrs asyncErrs
	bob, err := nats.Connect(url, nats.UserInfo("bob", "b1"), nats.NoReconnect(), nats.ErrorHandler(bobErrs.handler),
		nats.ClosedHandler(func(*nats.Conn) { close(bobClosed) }))
	require.NoError(t, err)
	defer bob.Close()
	secret, err := alice.SubscribeSync("secret.x")
	require.NoError(t, err)
	open, err := alice.SubscribeSync("ok.x")
	require.NoError(t, err)
	require.NoError(t, alice.Flush())

	writeConf(t, path, listen+`
authorization {
  users [
    {user: alice, password: a1, permissions: {publish: "ok.>", subscribe: {allow: ">", deny: "secret.>"}}}
  ]
}
max_subscriptions: 100
debug: true
`)
	stop <- syscall.SIGHUP
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "msg=reloaded") }, 5*time.Second, 10*time.Millisecond, logs.String())

	select {
	case <-bobClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed user's connection was not closed")
	}
	require.True(t, bobErrs.has("authorization violation"), "bob was told why")
	_, err = nats.Connect(url, nats.UserInfo("bob", "b1"))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	require.Eventually(t, func() bool { return aliceErrs.has(`Permissions Violation for Subscription to "secret.x"`) }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, alice.Publish("secret.x", []byte("no")))
	require.NoError(t, alice.Publish("ok.x", []byte("yes")))
	m, err := open.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "yes", string(m.Data))
	require.Eventually(t, func() bool { return aliceErrs.has(`Permissions Violation for Publish to "secret.x"`) }, 5*time.Second, 10*time.Millisecond)
	_, err = secret.NextMsg(100 * time.Millisecond)
	require.Error(t, err)
	require.Contains(t, logs.String(), "level=DEBUG", "debug: true applies at reload")

	// A bad file: each error logged at its position, nothing changes.
	writeConf(t, path, listen+"authorization {\n  users [ {user: alice, password: changed} ]\n}\nbogus_key: 1\nmax_payload: -3\n")
	stop <- syscall.SIGHUP
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), path+":5:1: unknown key") }, 5*time.Second, 10*time.Millisecond, logs.String())
	require.Contains(t, logs.String(), path+":6:14: max_payload: -3 is out of range")
	nc, err := nats.Connect(url, nats.UserInfo("alice", "a1"))
	require.NoError(t, err, "the running configuration is kept")
	nc.Close()

	// Listeners cannot move at a reload: refused whole, with the position.
	writeConf(t, path, fmt.Sprintf("listen: 127.0.0.1:%d\nauthorization { users [ {user: carol, password: c1} ] }\n", port+1))
	stop <- syscall.SIGHUP
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), path+":1:1: listen: cannot be changed by a reload")
	}, 5*time.Second, 10*time.Millisecond, logs.String())
	_, err = nats.Connect(url, nats.UserInfo("carol", "c1"))
	require.Error(t, err)
	require.False(t, alice.IsClosed())
}

// TestReloadAddsAuth: clients of a broker without authentication are
// checked when a reload turns it on; those whose CONNECT matches a new
// user stay.
func TestReloadAddsAuth(t *testing.T) {
	port := testpeer.FreePort(t)
	path := filepath.Join(t.TempDir(), "a.conf")
	listen := fmt.Sprintf("listen: 127.0.0.1:%d\n", port)
	writeConf(t, path, listen)
	stop, logs, _ := startWithConfig(t, path)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	anonClosed := make(chan struct{})
	anon, err := nats.Connect(url, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(anonClosed) }))
	require.NoError(t, err)
	defer anon.Close()
	dave, err := nats.Connect(url, nats.UserInfo("dave", "d1"), nats.NoReconnect())
	require.NoError(t, err)
	defer dave.Close()

	writeConf(t, path, listen+"authorization { users [ {user: dave, password: d1} ] }\n")
	stop <- syscall.SIGHUP
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "msg=reloaded") }, 5*time.Second, 10*time.Millisecond)
	select {
	case <-anonClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the anonymous connection was not closed")
	}
	require.NoError(t, dave.Flush())
	require.False(t, dave.IsClosed())
}

// TestReloadToken: a new token closes connections made with the old one.
func TestReloadToken(t *testing.T) {
	port := testpeer.FreePort(t)
	path := filepath.Join(t.TempDir(), "t.conf")
	listen := fmt.Sprintf("listen: 127.0.0.1:%d\n", port)
	writeConf(t, path, listen+"authorization { token: first }\n")
	stop, logs, _ := startWithConfig(t, path)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	closed := make(chan struct{})
	old, err := nats.Connect(url, nats.Token("first"), nats.NoReconnect(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	require.NoError(t, err)
	defer old.Close()
	writeConf(t, path, listen+"authorization { token: second }\n")
	stop <- syscall.SIGHUP
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "msg=reloaded") }, 5*time.Second, 10*time.Millisecond)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the old token's connection was not closed")
	}
	nc, err := nats.Connect(url, nats.Token("second"))
	require.NoError(t, err)
	nc.Close()
	require.NotContains(t, logs.String(), "second", "a token reached the log")
	require.NotContains(t, logs.String(), "first")
}
