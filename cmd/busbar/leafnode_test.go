package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testpeer"
)

// TestLeafnodesConfigAndMonitoring: `leafnodes { remotes }` in the config
// file makes busbar a leaf of a real nats-server (Debian's): a message
// published on the hub reaches a busbar client and back, /leafz shows the
// link with nats-server's field names, and /metrics has the link's
// figures. The hub URL carries a password, which appears nowhere.
func TestLeafnodesConfigAndMonitoring(t *testing.T) {
	hub := natsserver.Start(t, natsserver.Binary(t, "2.9.10"), natsserver.Config{
		Leaf: "  authorization { user: leaf, password: \"leaf-s3cret\" }",
	})
	natsPort, monPort := testpeer.FreePort(t), testpeer.FreePort(t)
	conf := filepath.Join(t.TempDir(), "busbar.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`
server_name: edge-1
port: %d
http_port: %d
leafnodes {
  reconnect: "100ms"
  remotes [ { url: "nats-leaf://leaf:leaf-s3cret@127.0.0.1:%d" } ]
}
`, natsPort, monPort, hub.LeafPort)), 0o600))
	logs := startFlags(t, "-c", conf, "--mqtt_port", "0", "--ws_port", "0")
	base := "http://" + testpeer.Addr(monPort)

	var leafz struct {
		ID       string `json:"server_id"`
		NumLeafs int    `json:"leafnodes"`
		Leafs    []struct {
			Name    string `json:"name"`
			Account string `json:"account"`
			IP      string `json:"ip"`
			Port    int    `json:"port"`
			InMsgs  int64  `json:"in_msgs"`
			OutMsgs int64  `json:"out_msgs"`
		} `json:"leafs"`
	}
	require.Eventually(t, func() bool {
		code, body := httpGet(t, base+"/leafz")
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal(body, &leafz))
		return leafz.NumLeafs == 1
	}, 10*time.Second, 20*time.Millisecond, "the link comes up: %s", logs)
	require.Equal(t, "127.0.0.1", leafz.Leafs[0].IP)
	require.Equal(t, hub.LeafPort, leafz.Leafs[0].Port)
	require.NotEmpty(t, leafz.ID)

	local, err := nats.Connect("nats://" + testpeer.Addr(natsPort))
	require.NoError(t, err)
	defer local.Close()
	remote, err := nats.Connect(hub.ClientURL)
	require.NoError(t, err)
	defer remote.Close()
	sub, err := local.SubscribeSync("to.edge")
	require.NoError(t, err)
	require.NoError(t, local.Flush())
	back, err := remote.SubscribeSync("to.hub")
	require.NoError(t, err)
	require.NoError(t, remote.Flush())
	require.Eventually(t, func() bool { // interest crosses the link
		_ = remote.Publish("to.edge", []byte("hello edge"))
		_ = local.Publish("to.hub", []byte("hello hub"))
		_, e1 := sub.NextMsg(50 * time.Millisecond)
		_, e2 := back.NextMsg(50 * time.Millisecond)
		return e1 == nil && e2 == nil
	}, 10*time.Second, 10*time.Millisecond)

	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	require.Equal(t, 1.0, fams["busbar_leafnode_up"].Metric[0].GetGauge().GetValue())
	require.GreaterOrEqual(t, fams["busbar_leafnode_in_messages_total"].Metric[0].GetCounter().GetValue(), 1.0)
	require.GreaterOrEqual(t, fams["busbar_leafnode_out_messages_total"].Metric[0].GetCounter().GetValue(), 1.0)
	labels := map[string]string{}
	for _, l := range fams["busbar_leafnode_up"].Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	require.Equal(t, map[string]string{"remote": "0", "account": "$G"}, labels)

	_, varz := httpGet(t, base+"/varz")
	for _, out := range [][]byte{body, varz, []byte(logs.String())} {
		require.NotContains(t, string(out), "leaf-s3cret")
	}
	require.Contains(t, logs.String(), "leafnode_remotes=1")
}
