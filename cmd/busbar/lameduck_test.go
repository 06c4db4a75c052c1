package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
)

// TestLameDuckSignal runs busbar as a child process with a durable store
// and lame duck keys in its config, signals it with `busbar --ldm PID`
// (SIGUSR2): the NATS client is told, the child exits 0, and the store
// reopens with the MQTT session and retained message it had.
func TestLameDuckSignal(t *testing.T) {
	dir := t.TempDir()
	natsPort, mqttPort := testpeer.FreePort(t), testpeer.FreePort(t)
	conf := filepath.Join(t.TempDir(), "busbar.conf")
	writeConf(t, conf, fmt.Sprintf("lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"200ms\"\nmqtt { listen: \"127.0.0.1:%d\" }\n", mqttPort))
	ch := startChildArgs(t, dir, natsPort, mqttPort, "-c", conf)
	defer ch.kill()

	mqttURL := "tcp://" + testpeer.Addr(mqttPort)
	mc := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(mqttURL).SetClientID("ld-keep").
		SetCleanSession(false).SetProtocolVersion(4).SetAutoReconnect(false))
	tok := mc.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	tok = mc.Subscribe("ld/keep", 1, nil)
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	tok = mc.Publish("ld/retained", 1, true, "kept")
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	ldm := make(chan struct{}, 1)
	nc, err := nats.Connect("nats://"+testpeer.Addr(natsPort), nats.NoReconnect(),
		nats.LameDuckModeHandler(func(*nats.Conn) { ldm <- struct{}{} }))
	require.NoError(t, err)
	defer nc.Close()

	var out, errOut syncBuffer
	require.Equal(t, 0, run([]string{"--ldm", strconv.Itoa(ch.cmd.Process.Pid)}, &out, &errOut, nil), errOut.String())
	select {
	case <-ldm:
	case <-time.After(5 * time.Second):
		t.Fatalf("no lame duck notice: %s", ch.logs.String())
	}
	exited := make(chan error, 1)
	go func() { exited <- ch.cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "busbar did not exit 0: %s", ch.logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("busbar still runs after lame duck: %s", ch.logs.String())
	}
	logs := ch.logs.String()
	require.Contains(t, logs, "entering lame duck mode")
	require.Contains(t, logs, "duration=30s")
	require.Contains(t, logs, "grace_period=200ms")
	require.Contains(t, logs, "lame duck: clients closed, shutting down")
	require.NotContains(t, logs, "level=ERROR")

	ch2 := startChildArgs(t, dir, natsPort, mqttPort, "-c", conf)
	defer ch2.kill()
	mc2 := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(mqttURL).SetClientID("ld-keep").
		SetCleanSession(false).SetProtocolVersion(4).SetAutoReconnect(false))
	ctok := mc2.Connect()
	require.True(t, ctok.WaitTimeout(5*time.Second))
	require.NoError(t, ctok.Error(), ch2.logs.String())
	require.True(t, ctok.(*mqtt3.ConnectToken).SessionPresent(), "the session did not survive lame duck mode")
	got := make(chan string, 1)
	tok = mc2.Subscribe("ld/retained", 1, func(_ mqtt3.Client, m mqtt3.Message) { got <- string(m.Payload()) })
	require.True(t, tok.WaitTimeout(5*time.Second))
	select {
	case p := <-got:
		require.Equal(t, "kept", p)
	case <-time.After(5 * time.Second):
		t.Fatal("the retained message was lost")
	}
	mc2.Disconnect(100)
}

// TestSignalFlagErrors: --signal and --ldm say what is wrong.
func TestSignalFlagErrors(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "busbar.pid")
	require.NoError(t, os.WriteFile(pidFile, []byte("not a pid\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--signal", "ldm"}, "want CMD=PID"},
		{[]string{"--signal", "bogus=1"}, `unknown command "bogus"`},
		{[]string{"-sl", "ldm=" + pidFile}, "holds no pid"},
		{[]string{"--ldm", filepath.Join(t.TempDir(), "missing.pid")}, "neither a pid nor a readable pid file"},
		{[]string{"--ldm", "0"}, "invalid pid 0"},
	} {
		var out, errOut syncBuffer
		require.Equal(t, 1, run(tc.args, &out, &errOut, nil), strings.Join(tc.args, " "))
		require.Contains(t, errOut.String(), tc.want)
	}
}

// TestLameDuckThenTerm: SIGTERM during lame duck mode (default 2m, grace
// 10s) does not wait: the remaining clients are closed at once and busbar
// exits 0.
func TestLameDuckThenTerm(t *testing.T) {
	port := testpeer.FreePort(t)
	stop := make(chan os.Signal, 1)
	var out, logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-p", strconv.Itoa(port), "--mqtt_port", "0", "--ws_port", "0", "-m", "0"}, &out, &logs, stop)
	}()
	var nc *nats.Conn
	require.Eventually(t, func() bool {
		var err error
		nc, err = nats.Connect("nats://"+testpeer.Addr(port), nats.NoReconnect())
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	defer nc.Close()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })

	stop <- syscall.SIGUSR2
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "entering lame duck mode") }, 5*time.Second, 10*time.Millisecond)
	require.True(t, nc.IsConnected(), "closed within the 10s grace period")
	stop <- syscall.SIGUSR2 // a second one is ignored
	stop <- syscall.SIGTERM
	select {
	case code := <-done:
		require.Equal(t, 0, code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not end lame duck mode")
	}
	<-closed
	require.Contains(t, logs.String(), "already in lame duck mode")
	require.Contains(t, logs.String(), "closing the lame duck's remaining clients now")
}
