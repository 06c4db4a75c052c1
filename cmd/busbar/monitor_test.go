package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
)

// startFlags runs busbar with args until the test ends and returns its
// log once it is ready.
func startFlags(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	stop := make(chan os.Signal, 1)
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(args, logs, logs, stop) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "busbar ready") || len(done) > 0 }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, done, "busbar stopped: %s", logs.String())
	t.Cleanup(func() {
		stop <- syscall.SIGTERM
		select {
		case code := <-done:
			require.Equal(t, 0, code, logs.String())
		case <-time.After(10 * time.Second):
			t.Error("busbar did not stop")
		}
	})
	return logs
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// TestMonitorFlag: -m PORT serves the monitoring endpoints next to every
// transport and the durable store; the ready line names the listener and
// no longer lists monitoring as not yet implemented.
func TestMonitorFlag(t *testing.T) {
	natsPort, monPort := testpeer.FreePort(t), testpeer.FreePort(t)
	logs := startFlags(t, "-p", strconv.Itoa(natsPort), "-m", strconv.Itoa(monPort), "--mqtt_port", "-1", "--ws_port", "-1",
		"--store_dir", t.TempDir())
	base := "http://" + testpeer.Addr(monPort)
	require.Contains(t, logs.String(), "monitor="+testpeer.Addr(monPort))
	require.NotContains(t, logs.String(), "not_yet")
	mqttAddr := regexpAddr(t, logs.String(), "mqtt")

	code, body := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, string(body))

	nc, err := nats.Connect("nats://"+testpeer.Addr(natsPort), nats.Name("cmd-test"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.SubscribeSync("greet")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("greet", []byte("hi")))
	require.NoError(t, nc.Flush())
	mc := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("cmd-mqtt").SetCleanSession(false).SetAutoReconnect(false))
	tok := mc.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer mc.Disconnect(100)

	var varz map[string]any
	code, body = httpGet(t, base+"/varz")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &varz))
	require.Equal(t, float64(natsPort), varz["port"])
	require.Equal(t, float64(monPort), varz["http_port"])
	require.Equal(t, 2.0, varz["connections"])
	require.Contains(t, varz, "store_stats")

	var connz struct {
		Total int `json:"total"`
		Conns []struct {
			Name      string `json:"name"`
			Transport string `json:"transport"`
			InMsgs    int64  `json:"in_msgs"`
			Subs      int    `json:"subscriptions"`
		} `json:"connections"`
	}
	code, body = httpGet(t, base+"/connz?transport=nats")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &connz))
	require.Equal(t, 1, connz.Total)
	require.Equal(t, "cmd-test", connz.Conns[0].Name)
	require.Equal(t, int64(1), connz.Conns[0].InMsgs)
	require.Equal(t, 1, connz.Conns[0].Subs)

	metrics := func() map[string]*dto.MetricFamily {
		code, body := httpGet(t, base+"/metrics")
		require.Equal(t, http.StatusOK, code)
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		require.NoError(t, err)
		return fams
	}
	fams := metrics()
	for _, name := range []string{"busbar_connections", "busbar_in_messages_total", "busbar_mqtt_sessions", "busbar_retained_messages",
		"busbar_store_size_bytes", "busbar_store_fsyncs_total", "busbar_store_last_fsync_seconds"} {
		require.Contains(t, fams, name)
	}
	require.Equal(t, 1.0, fams["busbar_mqtt_sessions"].Metric[0].GetGauge().GetValue())
	require.Eventually(t, func() bool {
		return metrics()["busbar_store_size_bytes"].Metric[0].GetGauge().GetValue() > 0
	}, 5*time.Second, 20*time.Millisecond, "the persistent MQTT session reaches the log")
}

// regexpAddr finds key=HOST:PORT in the ready line.
func regexpAddr(t *testing.T, logs, key string) string {
	t.Helper()
	i := strings.Index(logs, " "+key+"=")
	require.GreaterOrEqual(t, i, 0, logs)
	rest := logs[i+len(key)+2:]
	if j := strings.IndexAny(rest, " \n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestMonitorOff: -m 0 runs no monitoring listener.
func TestMonitorOff(t *testing.T) {
	logs := startFlags(t, "-p", strconv.Itoa(testpeer.FreePort(t)), "-m", "0", "--mqtt_port", "0", "--ws_port", "0")
	require.NotContains(t, logs.String(), "monitor=")
	require.NotContains(t, logs.String(), "not_yet")
}

// TestMonitorConfig: http_port and http in a configuration file.
func TestMonitorConfig(t *testing.T) {
	for _, key := range []string{"http_port: %d", "http: \"127.0.0.1:%d\""} {
		t.Run(strings.Fields(key)[0], func(t *testing.T) {
			natsPort, monPort := testpeer.FreePort(t), testpeer.FreePort(t)
			path := filepath.Join(t.TempDir(), "m.conf")
			writeConf(t, path, fmt.Sprintf("port: %d\n"+key+"\n", natsPort, monPort))
			_, logs, _ := startWithConfig(t, path)
			require.Contains(t, logs.String(), "monitor="+testpeer.Addr(monPort))
			code, _ := httpGet(t, "http://"+testpeer.Addr(monPort)+"/varz")
			require.Equal(t, http.StatusOK, code)
		})
	}
}

// TestMonitorAddressInUse: a busy monitoring port stops busbar with the
// address and the reason, as a busy client port does.
func TestMonitorAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	var out, logs syncBuffer
	code := run([]string{"-p", strconv.Itoa(testpeer.FreePort(t)), "-m", strconv.Itoa(busy), "--mqtt_port", "0", "--ws_port", "0"}, &out, &logs, nil)
	require.Equal(t, 1, code)
	require.Contains(t, logs.String(), "monitor: listen 127.0.0.1:"+strconv.Itoa(busy)+": address already in use")
}
