package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/internal/testpeer"
)

// TestHelpShowsEachOptionOnce (issue 18): -h lists every option once,
// with its aliases on the same line, in nats-server's sections.
func TestHelpShowsEachOptionOnce(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"-h"}, &out, &errb, nil))
	help := errb.String()
	for _, line := range []string{
		"-a, --addr, --net HOST", "-p, --port PORT", "-n, --name, --server_name NAME", "-P, --pid FILE",
		"-m, --http_port PORT", "--client_advertise HOST:PORT", "-T, --logtime", "--tls ", "--tlscert FILE",
		"--tlskey FILE", "--tlsverify", "--tlscacert FILE", "-c, --config FILE", "-DV", "TLS Options",
	} {
		require.Contains(t, help, line)
	}
	for _, name := range []string{"--addr", "--http_port", "--server_name", "--tlscert", "--store_dir"} {
		require.Equal(t, 1, strings.Count(help, name+" ")+strings.Count(help, name+","), "%s listed once", name)
	}
}

// TestCommandLineErrorsAreOneLine: an option busbar does not have
// (cluster and route options most of all), an unknown one, a missing
// argument or file: one line saying why, never the whole usage.
func TestCommandLineErrorsAreOneLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.conf")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--routes", "nats-route://10.0.0.1:6222"}, 2, "--routes: not supported: busbar has no cluster of its own: join a NATS cluster as a leaf node"},
		{[]string{"--cluster", "nats://0.0.0.0:6222"}, 2, "--cluster: not supported: busbar has no cluster of its own"},
		{[]string{"--cluster_name=c1"}, 2, "--cluster_name=c1: not supported: busbar has no cluster of its own"},
		{[]string{"--syslog"}, 2, "--syslog: not supported: busbar logs to stderr or a file"},
		{[]string{"--bogus"}, 2, "unknown option --bogus (see busbar -h)"},
		{[]string{"-c"}, 2, "-c needs a FILE"},
		{[]string{"-p", "x"}, 2, `-p: "x" is not a number`},
		{[]string{"-c", missing}, 1, missing + ": cannot read configuration: no such file or directory"},
		{[]string{"-t", "-c", missing}, 1, missing + ": cannot read configuration: no such file or directory"},
	} {
		var out, errb bytes.Buffer
		require.Equal(t, tc.code, run(tc.args, &out, &errb, nil), "%v: %s", tc.args, errb.String())
		msg := errb.String()
		require.Equal(t, 1, strings.Count(msg, "\n"), "%v: one line, got %q", tc.args, msg)
		require.Contains(t, msg, tc.want, "%v", tc.args)
		require.NotContains(t, msg, "Usage")
		require.NotContains(t, msg, ":1:1", "no made-up position")
	}
}

// TestServerOptionFlags: -n, -P, --client_advertise, -T=false and the
// TLS options take effect: nats.go connects over TLS, monitoring shows
// the name, the pid file holds the process id, INFO advertises the
// address, and log lines carry no time.
func TestServerOptionFlags(t *testing.T) {
	certs := testcert.Write(t)
	port, httpPort := testpeer.FreePort(t), testpeer.FreePort(t)
	pidFile := filepath.Join(t.TempDir(), "busbar.pid")
	stop := make(chan os.Signal, 1)
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-p", strconv.Itoa(port), "-m", strconv.Itoa(httpPort), "--mqtt_port", "0", "--ws_port", "0",
			"-n", "edge-9", "-P", pidFile, "--client_advertise", "nats.example.com:4222", "-T=false",
			"--tls", "--tlscert", certs.ServerCert, "--tlskey", certs.ServerKey}, logs, logs, stop)
	}()
	t.Cleanup(func() {
		stop <- syscall.SIGTERM
		<-done
		_, err := os.Stat(pidFile)
		require.True(t, os.IsNotExist(err), "the pid file is removed at exit")
	})
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "busbar ready") || len(done) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, done, logs.String())

	nc, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", port), nats.Secure(&tls.Config{RootCAs: certs.Pool, MinVersion: tls.VersionTLS12}))
	require.NoError(t, err)
	defer nc.Close()
	require.Contains(t, nc.Servers(), "tls://nats.example.com:4222", "client_advertise in INFO connect_urls")

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", httpPort))
	require.NoError(t, err)
	var v struct {
		Name string `json:"server_name"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	require.Equal(t, "edge-9", v.Name)

	pid, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid()), string(pid))
	require.NotContains(t, logs.String(), "time=", "-T=false")
}
